//! The command-table generator of `platos` (`xtask/src/cli.rs`): a snapshot
//! of what it makes of the fixture spec, the naming and argument rules, and
//! its refusals, each naming the operation.

use xtask::cli;

const MINI: &str = include_str!("fixtures/mini.yaml");

/// A spec with no tags and no paths: what the V1 side is when a test is
/// about the agent side only.
const EMPTY: &str = "openapi: 3.0.3\ninfo: {title: Empty, version: 0.0.1}\npaths: {}\n";

#[test]
fn fixture_commands_match_snapshot() {
    let body = cli::generate(MINI, MINI).expect("fixture generates");
    insta::assert_snapshot!("mini_cli", body);
}

/// Required path parameters are positional in path order, then required
/// body fields; nullable ones and the rest are flags. A dotted tag nests.
#[test]
fn arguments_follow_the_path_and_dotted_tags_nest() {
    let yaml = MINI
        .replace(
            "components:\n",
            r#"  /api/shelves/{shelfId}/things/{thingId}:
    put:
      operationId: things_shelf_move
      tags: [things.shelf]
      x-platos-method: move_to
      parameters:
        - name: thingId
          in: path
          required: true
          schema: {type: string}
        - name: shelfId
          in: path
          required: true
          schema: {type: string}
      requestBody:
        content:
          application/json:
            schema:
              $ref: '#/components/schemas/CreateThing'
      responses:
        2XX:
          description: Moved.
components:
"#,
        )
        .replace(
            "tags:\n  - name: things\n",
            "tags:\n  - name: things\n  - name: things.shelf\n",
        );
    let out = cli::generate(&yaml, EMPTY).expect("generates");
    let at = out.find("\"things_shelf_move\"").expect("generated");
    let start = out[..at].rfind("    Op {").expect("start of op");
    let op = &out[start..];
    let op = &op[..op.find("    },\n").expect("end of op")];
    assert!(op.contains(r#"namespace: &["things", "shelf"]"#), "{op}");
    assert!(op.contains(r#"name: "move-to""#), "{op}");
    let shelf = op.find(r#"wire: "shelfId""#).expect("shelfId");
    let thing = op.find(r#"wire: "thingId""#).expect("thingId");
    let name = op
        .find(r#"wire: "name", flag: "name", place: Place::Body, required: true"#)
        .expect("name positional");
    let title = op
        .find(r#"wire: "title", flag: "title", place: Place::Body, required: false"#)
        .expect("title a flag");
    assert!(shelf < thing && thing < name && name < title, "{op}");
    assert!(
        out.contains(r#"Namespace { api: Api::Agent, path: &["things", "shelf"]"#),
        "{out}"
    );
}

#[test]
fn stream_operations_get_no_command() {
    let yaml = MINI.replace(
        "      operationId: things_archive\n",
        "      operationId: things_archive\n      x-platos-stream: true\n",
    );
    let out = cli::generate(&yaml, EMPTY).expect("generates");
    assert!(!out.contains("things_archive"), "{out}");
    assert!(out.contains("things_list"));
}

#[test]
fn every_problem_is_reported_with_its_operation() {
    let yaml = MINI
        .replace(
            "      operationId: things_list\n      tags: [things]\n",
            "      operationId: things_list\n      tags: [gadgets]\n",
        )
        .replace(
            "      operationId: things_create\n      tags: [things]\n",
            "      operationId: things_create\n      tags: [things, more]\n",
        )
        .replace(
            "  /api/things/{thingId}/archive:",
            "  /api/things/{id}/archive:",
        );
    let err = format!("{:#}", cli::generate(&yaml, EMPTY).unwrap_err());
    assert!(
        err.contains("things_list: tag `gadgets` is not declared"),
        "{err}"
    );
    assert!(
        err.contains("things_create: needs exactly one tag, has 2"),
        "{err}"
    );
    assert!(
        err.contains("things_archive: path parameter `id` is not declared"),
        "{err}"
    );

    let clash = MINI.replace("        - name: pinned\n", "        - name: json\n");
    let err = format!("{:#}", cli::generate(&clash, EMPTY).unwrap_err());
    assert!(
        err.contains("things_list: parameter `json` collides with the global flag `--json`"),
        "{err}"
    );
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(
        cli::generate(MINI, MINI).unwrap(),
        cli::generate(MINI, MINI).unwrap()
    );
}
