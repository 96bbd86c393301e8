//! Encodes a swagger 2.0 document into gnostic's `openapi.v2.Document` protobuf, the only form
//! of `/openapi/v2` kubectl fetches (`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).
//!
//! Mirrors what upstream's `kube-openapi/pkg/handler` `ToProtoBinary` produces through gnostic's
//! compiler, for the parts of the document the parent module writes: `swagger`, `info`, `paths`
//! (operations, parameters, responses) and `definitions` (schemas). Field numbers are those of
//! `openapiv2/OpenAPIv2.proto` in google/gnostic-models. As gnostic does, every `x-` key becomes
//! a `NamedAny` whose `Any.yaml` holds the value's text; we write JSON, which is valid YAML.
//! Keys the proto has no field for are skipped. Fields are written in field-number order, as
//! Go's and Python's encoders do, so the bytes match theirs.
//!
//! Input is a JSON value we built ourselves; anything of an unexpected shape is left out rather
//! than failing, so encoding cannot fail.

use serde_json::{Map, Value};

/// Protobuf wire type of varints (bools, ints).
const VARINT: u8 = 0;
/// Protobuf wire type of strings, bytes and embedded messages.
const LEN: u8 = 2;

/// Encodes a whole swagger document as `openapi.v2.Document`.
pub(super) fn document(doc: &Value) -> Vec<u8> {
    let mut w = Writer::default();
    let Value::Object(doc) = doc else {
        return w.0;
    };
    w.string(1, str_of(doc, "swagger"));
    if let Some(Value::Object(info)) = doc.get("info") {
        w.message(2, |w| {
            w.string(1, str_of(info, "title"));
            w.string(2, str_of(info, "version"));
            w.string(3, str_of(info, "description"));
            w.extensions(7, info);
        });
    }
    if let Some(Value::Object(paths)) = doc.get("paths") {
        w.message(8, |w| {
            w.extensions(1, paths);
            for (path, item) in paths {
                if let Value::Object(item) = item {
                    // NamedPathItem
                    w.message(2, |w| {
                        w.string(1, path);
                        w.message(2, |w| path_item(w, item));
                    });
                }
            }
        });
    }
    if let Some(Value::Object(definitions)) = doc.get("definitions") {
        w.message(9, |w| named_schemas(w, 1, definitions));
    }
    w.extensions(16, doc);
    w.0
}

/// Encodes one schema as `openapi.v2.Schema` (tests pin these bytes).
#[cfg(test)]
fn schema_bytes(schema: &Value) -> Vec<u8> {
    let mut w = Writer::default();
    if let Value::Object(schema) = schema {
        self::schema(&mut w, schema);
    }
    w.0
}

fn path_item(w: &mut Writer, item: &Map<String, Value>) {
    for (field, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(Value::Object(op)) = item.get(method) {
            w.message(field, |w| operation(w, op));
        }
    }
    for parameter in array_of(item, "parameters") {
        w.message(9, |w| parameters_item(w, parameter));
    }
    w.extensions(10, item);
}

fn operation(w: &mut Writer, op: &Map<String, Value>) {
    w.strings(1, op.get("tags"));
    w.string(2, str_of(op, "summary"));
    w.string(3, str_of(op, "description"));
    w.string(5, str_of(op, "operationId"));
    w.strings(6, op.get("produces"));
    w.strings(7, op.get("consumes"));
    for parameter in array_of(op, "parameters") {
        w.message(8, |w| parameters_item(w, parameter));
    }
    if let Some(Value::Object(responses)) = op.get("responses") {
        w.message(9, |w| {
            for (code, response) in responses {
                let Value::Object(response) = response else {
                    continue;
                };
                // NamedResponseValue { name, value: ResponseValue }
                w.message(1, |w| {
                    w.string(1, code);
                    w.message(2, |w| match response.get("$ref").and_then(Value::as_str) {
                        Some(reference) => w.message(2, |w| json_reference(w, reference, response)),
                        None => w.message(1, |w| {
                            w.string(1, str_of(response, "description"));
                            if let Some(Value::Object(schema)) = response.get("schema") {
                                // SchemaItem { schema }
                                w.message(2, |w| w.message(1, |w| self::schema(w, schema)));
                            }
                            w.extensions(5, response);
                        }),
                    });
                });
            }
            w.extensions(2, responses);
        });
    }
    w.strings(10, op.get("schemes"));
    w.bool(11, op.get("deprecated") == Some(&Value::Bool(true)));
    w.extensions(13, op);
}

fn json_reference(w: &mut Writer, reference: &str, from: &Map<String, Value>) {
    w.string(1, reference);
    w.string(2, str_of(from, "description"));
}

/// `ParametersItem`: a `Parameter` (body, or query/path/header) or a `JsonReference`.
fn parameters_item(w: &mut Writer, parameter: &Map<String, Value>) {
    if let Some(reference) = parameter.get("$ref").and_then(Value::as_str) {
        w.message(2, |w| json_reference(w, reference, parameter));
        return;
    }
    let required = parameter.get("required") == Some(&Value::Bool(true));
    let unique = parameter.get("uniqueItems") == Some(&Value::Bool(true));
    let location = str_of(parameter, "in");
    w.message(1, |w| match location {
        "body" => w.message(1, |w| {
            w.string(1, str_of(parameter, "description"));
            w.string(2, str_of(parameter, "name"));
            w.string(3, location);
            w.bool(4, required);
            if let Some(Value::Object(schema)) = parameter.get("schema") {
                w.message(5, |w| self::schema(w, schema));
            }
            w.extensions(6, parameter);
        }),
        // NonBodyParameter { header = 1, form_data = 2, query = 3, path = 4 }. Query and form
        // data number their fields alike, as do path and header.
        _ => w.message(2, |w| {
            let (which, query_like) = match location {
                "header" => (1, false),
                "formData" => (2, true),
                "path" => (4, false),
                _ => (3, true),
            };
            w.message(which, |w| {
                w.bool(1, required);
                w.string(2, location);
                w.string(3, str_of(parameter, "description"));
                w.string(4, str_of(parameter, "name"));
                let shift = if query_like {
                    w.bool(5, parameter.get("allowEmptyValue") == Some(&Value::Bool(true)));
                    1
                } else {
                    0
                };
                w.string(5 + shift, str_of(parameter, "type"));
                w.string(6 + shift, str_of(parameter, "format"));
                w.bool(19 + shift, unique);
                for value in array_of_values(parameter, "enum") {
                    w.message(20 + shift, |w| any(w, value));
                }
                w.extensions(22 + shift, parameter);
            });
        }),
    });
}

fn named_schemas(w: &mut Writer, field: u32, schemas: &Map<String, Value>) {
    for (name, schema) in schemas {
        if let Value::Object(schema) = schema {
            // NamedSchema { name, value }
            w.message(field, |w| {
                w.string(1, name);
                w.message(2, |w| self::schema(w, schema));
            });
        }
    }
}

fn schema(w: &mut Writer, schema: &Map<String, Value>) {
    w.string(1, str_of(schema, "$ref"));
    w.string(2, str_of(schema, "format"));
    w.string(3, str_of(schema, "title"));
    w.string(4, str_of(schema, "description"));
    w.bool(16, schema.get("uniqueItems") == Some(&Value::Bool(true)));
    w.strings(19, schema.get("required"));
    for value in array_of_values(schema, "enum") {
        w.message(20, |w| any(w, value));
    }
    match schema.get("additionalProperties") {
        // AdditionalPropertiesItem { oneof { schema = 1; boolean = 2 } }; a oneof member is
        // written even when it holds the default value.
        Some(Value::Bool(allowed)) => w.message(21, |w| {
            w.tag(2, VARINT);
            w.varint(u64::from(*allowed));
        }),
        Some(Value::Object(values)) => w.message(21, |w| w.message(1, |w| self::schema(w, values))),
        _ => {}
    }
    match schema.get("type") {
        // TypeItem { repeated string value = 1 }
        Some(t @ Value::String(_)) => w.message(22, |w| w.strings(1, Some(&Value::Array(vec![t.clone()])))),
        Some(types @ Value::Array(_)) => w.message(22, |w| w.strings(1, Some(types))),
        _ => {}
    }
    match schema.get("items") {
        // ItemsItem { repeated Schema schema = 1 }
        Some(Value::Object(items)) => w.message(23, |w| w.message(1, |w| self::schema(w, items))),
        Some(Value::Array(items)) => w.message(23, |w| {
            for item in items.iter().filter_map(Value::as_object) {
                w.message(1, |w| self::schema(w, item));
            }
        }),
        _ => {}
    }
    for part in array_of(schema, "allOf") {
        w.message(24, |w| self::schema(w, part));
    }
    if let Some(Value::Object(properties)) = schema.get("properties") {
        // Properties { repeated NamedSchema additional_properties = 1 }
        w.message(25, |w| named_schemas(w, 1, properties));
    }
    w.bool(27, schema.get("readOnly") == Some(&Value::Bool(true)));
    w.extensions(31, schema);
}

/// `Any { yaml = 2 }` holding `value` as text.
fn any(w: &mut Writer, value: &Value) {
    w.string(2, &value.to_string());
}

fn str_of<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn array_of<'a>(map: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a Map<String, Value>> {
    array_of_values(map, key).filter_map(Value::as_object)
}

fn array_of_values<'a>(map: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a Value> {
    map.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// Writes `value` as a protobuf varint into `buf`, returning how many bytes it took.
fn varint(mut value: u64, buf: &mut [u8; 10]) -> usize {
    let mut n = 0;
    while value >= 0x80 {
        // Truncation keeps the low seven bits plus the continuation bit, as intended.
        buf[n] = (value as u8 & 0x7f) | 0x80;
        value >>= 7;
        n += 1;
    }
    buf[n] = value as u8;
    n + 1
}

/// A protobuf writer: proto3 scalar fields that hold their default value are left out.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, value: u64) {
        let mut buf = [0; 10];
        let n = varint(value, &mut buf);
        self.0.extend_from_slice(&buf[..n]);
    }

    fn tag(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.tag(field, LEN);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn string(&mut self, field: u32, value: &str) {
        if !value.is_empty() {
            self.bytes(field, value.as_bytes());
        }
    }

    /// Every string of a JSON array, as a repeated string field.
    fn strings(&mut self, field: u32, values: Option<&Value>) {
        for value in values
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            self.bytes(field, value.as_bytes());
        }
    }

    fn bool(&mut self, field: u32, value: bool) {
        if value {
            self.tag(field, VARINT);
            self.varint(1);
        }
    }

    /// An embedded message, written by `body` (present even when empty). The body is written in
    /// place after a one-byte length; the rare body of 128 bytes or more has its longer length
    /// spliced in afterwards, which keeps encoding free of per-message allocations.
    fn message(&mut self, field: u32, body: impl FnOnce(&mut Writer)) {
        self.tag(field, LEN);
        let at = self.0.len();
        self.0.push(0);
        body(self);
        let mut len = [0; 10];
        let n = varint((self.0.len() - at - 1) as u64, &mut len);
        self.0.splice(at..at + 1, len[..n].iter().copied());
    }

    /// Each `x-` key of `map` as a repeated `NamedAny { name, value: Any { yaml } }`.
    fn extensions(&mut self, field: u32, map: &Map<String, Value>) {
        for (name, value) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
            self.message(field, |w| {
                w.string(1, name);
                w.message(2, |w| any(w, value));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // The expected bytes come from Python's protobuf runtime (protobuf 7.36.2) over the
    // classes protoc generated from gnostic-models' OpenAPIv2.proto, building the same message
    // field by field and calling SerializeToString().
    #[test]
    fn schema_encoding_matches_protobufs_own_encoder() {
        let schema = json!({
            "description": "d",
            "type": "array",
            "items": {"$ref": "#/definitions/io.k8s.api.core.v1.ContainerPort"},
            "x-kubernetes-patch-merge-key": "containerPort",
            "x-kubernetes-patch-strategy": "merge"
        });
        assert_eq!(hex(&schema_bytes(&schema)), EXPECTED_SCHEMA);
    }

    #[test]
    fn maps_enums_and_required_encode_as_gnostic_expects() {
        let schema = json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "enum": ["a", "b"]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "open": {"type": "object", "additionalProperties": false}
            },
            "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]
        });
        assert_eq!(hex(&schema_bytes(&schema)), EXPECTED_OBJECT);
    }

    #[test]
    fn operations_encode_parameters_and_responses() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.37.0"},
            "paths": {"/api/v1/namespaces/{namespace}/pods/{name}": {"patch": {
                "consumes": ["application/strategic-merge-patch+json"],
                "operationId": "patchCoreV1NamespacedPod",
                "parameters": [
                    {"name": "name", "in": "path", "required": true, "type": "string", "uniqueItems": true},
                    {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true},
                    {"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/P"}}
                ],
                "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/P"}}},
                "x-kubernetes-action": "patch"
            }}},
            "definitions": {"P": {"type": "object"}}
        });
        assert_eq!(hex(&document(&doc)), EXPECTED_DOCUMENT);
    }

    const EXPECTED_SCHEMA: &str = concat!(
        "220164b201070a056172726179ba01320a300a2e232f646566696e6974696f6e732f696f2e6b3873",
        "2e6170692e636f72652e76312e436f6e7461696e6572506f7274fa01310a1c782d6b756265726e65",
        "7465732d70617463682d6d657267652d6b65791211120f22636f6e7461696e6572506f727422fa01",
        "280a1b782d6b756265726e657465732d70617463682d737472617465677912091207226d65726765",
        "22",
    );
    const EXPECTED_OBJECT: &str = concat!(
        "9a01046e616d65b201080a066f626a656374ca01660a250a066c6162656c73121baa010d0a0bb201",
        "080a06737472696e67b201080a066f626a6563740a230a046e616d65121ba201051203226122a201",
        "051203226222b201080a06737472696e670a180a046f70656e1210aa01021000b201080a066f626a",
        "656374fa014f0a1f782d6b756265726e657465732d67726f75702d76657273696f6e2d6b696e6412",
        "2c122a5b7b2267726f7570223a22222c226b696e64223a22506f64222c2276657273696f6e223a22",
        "7631227d5d",
    );
    const EXPECTED_DOCUMENT: &str = concat!(
        "0a03322e3012150a0a4b756265726e65746573120776312e33372e3042b20212af020a2a2f617069",
        "2f76312f6e616d657370616365732f7b6e616d6573706163657d2f706f64732f7b6e616d657d1280",
        "0242fd012a187061746368436f726556314e616d65737061636564506f643a266170706c69636174",
        "696f6e2f7374726174656769632d6d657267652d70617463682b6a736f6e421f0a1d121b22190801",
        "12047061746822046e616d652a06737472696e6798010142290a2712251a2312057175657279220f",
        "6669656c6456616c69646174696f6e3206737472696e67a0010142250a230a211204626f64791a04",
        "626f647920012a110a0f232f646566696e6974696f6e732f504a240a220a03323030121b0a190a02",
        "4f4b12130a110a0f232f646566696e6974696f6e732f506a200a13782d6b756265726e657465732d",
        "616374696f6e12091207227061746368224a120a100a0150120bb201080a066f626a656374",
    );
}
