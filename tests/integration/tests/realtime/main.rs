//! The realtime suites, one binary: against the in-process test server
//! (`in_process`), shared connections and their attribution rules
//! (`shared`), a raw scripted Engine.IO server for what a well-behaved
//! server never does (`raw`), and the Node `socket.io` server Platos runs
//! (`node`). Their helpers are `platos_integration_tests::realtime`.

mod in_process;
mod lost_turn;
mod node;
mod raw;
mod shared;
