//! Typed Platos stream events.
