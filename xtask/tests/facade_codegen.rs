//! The namespace generator: a snapshot of what it makes of the fixture spec,
//! proof that a new tagged operation gets its method with no hand code, and
//! its refusals, each naming the operation.

use xtask::facade;

const MINI: &str = include_str!("fixtures/mini.yaml");

#[test]
fn fixture_namespaces_match_snapshot() {
    let body = facade::generate(MINI).expect("fixture generates");
    insta::assert_snapshot!("mini_namespaces", body);
}

/// Adding an operation to the spec is all it takes: the namespace gets the
/// method, the request its setters, the call its idempotency rule.
#[test]
fn a_new_tagged_operation_gets_its_method() {
    let before = facade::generate(MINI).unwrap();
    assert!(!before.contains("pub fn pin("));
    let yaml = MINI.replace(
        "components:\n",
        r#"  /api/things/{thingId}/pin:
    put:
      operationId: things_pin
      tags: [things]
      summary: Pin a thing
      x-platos-idempotency: once
      parameters:
        - name: thingId
          in: path
          required: true
          schema:
            type: string
        - name: note
          in: query
          schema:
            type: string
      responses:
        2XX:
          description: The thing.
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Thing'
components:
"#,
    );
    let after = facade::generate(&yaml).expect("generates");
    assert!(
        after.contains("pub fn pin(&self, thing_id: impl Into<String>) -> ThingsPin"),
        "{after}"
    );
    assert!(after.contains("pub struct ThingsPin {"));
    assert!(after.contains("pub fn note(mut self, value: impl Into<String>) -> Self"));
    assert!(after.contains("crate::Result<crate::types::Thing>"));
    assert!(after.contains("rule: crate::retry::Idempotency::Once,"));
    assert!(after.contains("method: http::Method::PUT,"));
    assert!(after.contains("path: \"/api/things/{thingId}/pin\","));
    // One layer: the request builds its URL and hands it to the transport.
    assert!(after.contains("let thing_id = &self.thing_id;"), "{after}");
    assert!(after.contains("url.segment(thing_id)?;"), "{after}");
    assert!(after.contains("if let Some(value) = &self.note {"));
    assert!(after.contains("operation: &OPERATION,"), "{after}");
    assert!(
        after.contains(".call(self.prepare(), &self.call_options,"),
        "{after}"
    );
}

#[test]
fn list_extension_unwraps_and_pages() {
    let yaml = MINI.replace(
        "      operationId: things_list\n",
        "      operationId: things_list\n      x-platos-list: {keys: [things]}\n",
    );
    let out = facade::generate(&yaml).unwrap();
    assert!(
        out.contains("crate::Result<Vec<crate::types::Thing>>"),
        "{out}"
    );
    assert!(out.contains("first_non_empty([envelope.things])"));
    // Paging needs offset and limit: the fixture has no offset.
    let paged = MINI.replace(
        "      operationId: things_list\n",
        "      operationId: things_list\n      x-platos-list: {keys: [things], paged: true}\n",
    );
    let err = format!("{:#}", facade::generate(&paged).unwrap_err());
    assert!(
        err.contains("operation things_list: x-platos-list: a paged list needs the optional query parameter offset"),
        "{err}"
    );
}

#[test]
fn open_enums_are_generated_and_checked() {
    let yaml = MINI
        .replace(
            "tags:\n",
            "x-platos-enums:\n  ThingState:\n    type: string\n    values: [on, off, timed_out]\ntags:\n",
        )
        .replace(
            "        - name: status\n          in: query\n",
            "        - name: status\n          in: query\n          x-platos-enum: ThingState\n",
        );
    let out = facade::generate(&yaml).unwrap();
    assert!(out.contains("pub enum ThingState {"), "{out}");
    assert!(out.contains("TimedOut,"));
    assert!(out.contains("Other(String),"));
    assert!(out.contains("pub fn status(mut self, value: impl Into<ThingState>) -> Self"));

    let unknown = yaml.replace("x-platos-enum: ThingState", "x-platos-enum: Nope");
    let err = format!("{:#}", facade::generate(&unknown).unwrap_err());
    assert!(
        err.contains(
            "operation things_list: parameter status: x-platos-enum Nope is not in x-platos-enums"
        ),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_with_its_operation() {
    let yaml = MINI
        .replace(
            "      operationId: things_archive\n      tags: [things]\n",
            "      operationId: things_archive\n      tags: [stuff]\n",
        )
        .replace(
            "      operationId: things_create\n",
            "      operationId: things_create\n      x-platos-unwrap: nope\n",
        );
    let err = format!("{:#}", facade::generate(&yaml).unwrap_err());
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(
        err.contains("operation things_archive: tag stuff is not declared in `tags`"),
        "{err}"
    );
    assert!(
        err.contains(
            "operation things_create: x-platos-unwrap: Thing.nope must be a required property"
        ),
        "{err}"
    );
}

#[test]
fn generation_is_deterministic() {
    let real = include_str!("../../spec/openapi.yaml");
    assert_eq!(
        facade::generate(real).unwrap(),
        facade::generate(real).unwrap()
    );
}

/// The same generator serves the V1 client: its namespaces hang off
/// `V1Client`, answers are `Reply`s, `required`/`accepted` calls take a
/// caller's key, cursor-paged collections stream, and the stream read is
/// left to its hand-written reader.
#[test]
fn the_v1_client_is_generated_by_the_same_generator() {
    let v1 = include_str!("../../spec/v1.yaml");
    let out = facade::generate_for(v1, &facade::V1).expect("v1 generates");
    assert!(out.contains("impl crate::v1::V1Client {"), "{out}");
    assert!(out.contains("crate::Result<crate::v1::Reply<crate::v1::types::MintedTokenItem>>"));
    assert!(out.contains("self.call_options.idempotency_key = Some(value.into());"));
    assert!(out.contains("crate::paging::cursor_pages("));
    assert!(out.contains("id: \"mcp_platform_tokens_mint\","));
    assert!(out.contains("rule: crate::v1::KeyClass::Required,"));
    assert!(out.contains("rule: crate::v1::KeyClass::Exempt,"));
    assert!(!out.contains("environment_streams_read"));
    assert!(!out.contains("pub fn environment_streams("));
    assert_eq!(out, facade::generate_for(v1, &facade::V1).unwrap());

    // A V1 operation without its class is refused, by name.
    let missing = v1.replacen("      x-platos-idempotency-class: required\n", "", 1);
    let err = format!(
        "{:#}",
        facade::generate_for(&missing, &facade::V1).unwrap_err()
    );
    assert!(
        err.contains("operation provider_keys_rotate_secret: needs x-platos-idempotency-class"),
        "{err}"
    );
}

/// Path parameters are positional in path order; three or more arguments of
/// one type are setters (up to two path parameters stay positional), checked
/// when sent; a hand-written body type is one argument.
#[test]
fn arguments_follow_the_path_and_crowds_become_setters() {
    let yaml = MINI.replace(
        "components:\n",
        r#"  /api/orgs/{orgId}/things/{thingId}/links:
    post:
      operationId: things_link
      tags: [things]
      x-platos-body: {argument: decision, type: crate::Decision}
      parameters:
        - name: thingId
          in: path
          required: true
          schema:
            type: string
        - name: orgId
          in: path
          required: true
          schema:
            type: string
        - name: target
          in: query
          required: true
          schema:
            type: string
      requestBody:
        content:
          application/json:
            schema:
              $ref: '#/components/schemas/Thing'
      responses:
        2XX:
          description: The thing.
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Thing'
components:
"#,
    );
    let out = facade::generate(&yaml).expect("generates");
    assert!(
        out.contains(
            "pub fn link(\n        &self,\n        org_id: impl Into<String>,\n        thing_id: impl Into<String>,\n        decision: crate::Decision,\n    ) -> ThingsLink"
        ),
        "{out}"
    );
    assert!(out.contains("pub fn target(mut self, value: impl Into<String>) -> Self"));
    assert!(
        out.contains("let target = crate::request::needed(self.target.as_ref(), \"target\")?;")
    );
    assert!(out.contains("crate::request::RestBody::rest_body(decision)"));
}
