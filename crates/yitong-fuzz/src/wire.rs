//! Protobuf wire bytes for any message of the descriptor set, as proptest strategies.
//!
//! The strategies are built from `yitong_proto::FILE_DESCRIPTOR_SET`, so a field added to a
//! proto is fuzzed without anyone writing a generator for it. Every field gets values of its
//! type: strings that are arbitrary Unicode, printable noise, empty, long, or a valid-looking
//! value (a seeded card number, a date, an amount) kept as is or mutated; integers at their
//! extremes, small or arbitrary; enums known or not; nested messages, recursively; repeated
//! fields empty, short, or just around the batch limits. Fields are encoded the way any protobuf
//! encoder may send them, so every generated message decodes: what the handlers then see is
//! every combination of values, not just what prost refuses.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::select;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

/// Nested messages deeper than this are left out (none of ours is recursive; the bound keeps
/// the strategies finite if one ever is).
const DEPTH_MAX: u32 = 5;

/// The messages and enums of the descriptor set, by full name (".yitong.identity.v1.Credential").
#[derive(Debug)]
pub struct Schema {
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, Vec<i32>>,
    /// Valid-looking values, offered to every string field.
    dictionary: Vec<String>,
}

impl Schema {
    /// The schema of every Yitong proto (and the well-known types they import), with
    /// `dictionary` as the valid-looking strings.
    pub fn load(dictionary: Vec<String>) -> Arc<Schema> {
        let set = FileDescriptorSet::decode(yitong_proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut schema = Schema {
            messages: HashMap::new(),
            enums: HashMap::new(),
            dictionary,
        };
        for file in &set.file {
            let package = format!(".{}", file.package());
            for message in &file.message_type {
                schema.add_message(&package, message);
            }
            for enumeration in &file.enum_type {
                schema.enums.insert(
                    format!("{package}.{}", enumeration.name()),
                    enumeration
                        .value
                        .iter()
                        .map(|value| value.number())
                        .collect(),
                );
            }
        }
        assert!(!schema.dictionary.is_empty());
        Arc::new(schema)
    }

    fn add_message(&mut self, scope: &str, message: &DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        for nested in &message.nested_type {
            self.add_message(&name, nested);
        }
        for enumeration in &message.enum_type {
            self.enums.insert(
                format!("{name}.{}", enumeration.name()),
                enumeration
                    .value
                    .iter()
                    .map(|value| value.number())
                    .collect(),
            );
        }
        self.messages.insert(name, message.clone());
    }

    /// Whether the schema has this message ("yitong.identity.v1.Credential").
    pub fn has(&self, full_name: &str) -> bool {
        self.messages.contains_key(&format!(".{full_name}"))
    }
}

/// Encoded messages of `full_name` ("yitong.identity.v1.GetInsuredPersonRequest").
pub fn message(schema: &Arc<Schema>, full_name: &str) -> BoxedStrategy<Vec<u8>> {
    assert!(schema.has(full_name), "{full_name} is not in the schema");
    message_at(schema, &format!(".{full_name}"), 0)
}

/// What a fuzz target is fed: mostly well-formed messages, some with bytes overwritten or cut,
/// some random bytes.
pub fn input(schema: &Arc<Schema>, full_name: &str) -> BoxedStrategy<Vec<u8>> {
    let well_formed = message(schema, full_name);
    prop_oneof![
        12 => well_formed.clone(),
        3 => (well_formed.clone(), prop::collection::vec((any::<usize>(), any::<u8>()), 1..4))
            .prop_map(|(mut bytes, writes)| {
                if !bytes.is_empty() {
                    let len = bytes.len();
                    for (at, byte) in writes {
                        bytes[at % len] = byte;
                    }
                }
                bytes
            }),
        1 => (well_formed, any::<usize>()).prop_map(|(mut bytes, at)| {
            bytes.truncate(at % (bytes.len() + 1));
            bytes
        }),
        2 => prop::collection::vec(any::<u8>(), 0..256),
    ]
    .boxed()
}

fn message_at(schema: &Arc<Schema>, name: &str, depth: u32) -> BoxedStrategy<Vec<u8>> {
    let Some(descriptor) = schema.messages.get(name) else {
        return Just(Vec::new()).boxed();
    };
    let fields: Vec<BoxedStrategy<Vec<u8>>> = descriptor
        .field
        .iter()
        .map(|field| field_strategy(schema, field, depth))
        .collect();
    fields.prop_map(|parts| parts.concat()).boxed()
}

/// The encoding of one field: absent, once, or (repeated) any number of times.
fn field_strategy(
    schema: &Arc<Schema>,
    field: &FieldDescriptorProto,
    depth: u32,
) -> BoxedStrategy<Vec<u8>> {
    let number = u64::from(u32::try_from(field.number()).expect("field numbers are positive"));
    let Some(value) = value_strategy(schema, field, depth) else {
        return Just(Vec::new()).boxed();
    };
    if field.label() == Label::Repeated {
        prop_oneof![
            200 => prop::collection::vec(value.clone(), 0..4),
            // Around the batch and page limits (100, 200 of a kind); rare, since such inputs
            // cost a hundred times the others to make.
            1 => prop::collection::vec(value, 95..210),
        ]
        .prop_map(move |values| {
            values
                .into_iter()
                .flat_map(|value| value.encode(number))
                .collect()
        })
        .boxed()
    } else {
        prop_oneof![
            1 => Just(Vec::new()),
            3 => value.prop_map(move |value| value.encode(number)),
        ]
        .boxed()
    }
}

/// One encoded value, before its tag.
#[derive(Debug, Clone)]
enum Value {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(Vec<u8>),
}

impl Value {
    fn encode(self, number: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let wire_type = match &self {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Bytes(_) => 2,
            Value::Fixed32(_) => 5,
        };
        prost::encoding::encode_varint((number << 3) | wire_type, &mut out);
        match self {
            Value::Varint(value) => prost::encoding::encode_varint(value, &mut out),
            Value::Fixed64(value) => out.extend_from_slice(&value.to_le_bytes()),
            Value::Fixed32(value) => out.extend_from_slice(&value.to_le_bytes()),
            Value::Bytes(bytes) => {
                prost::encoding::encode_varint(bytes.len() as u64, &mut out);
                out.extend_from_slice(&bytes);
            }
        }
        out
    }
}

fn value_strategy(
    schema: &Arc<Schema>,
    field: &FieldDescriptorProto,
    depth: u32,
) -> Option<BoxedStrategy<Value>> {
    Some(match field.r#type() {
        Type::String => string(schema)
            .prop_map(|text| Value::Bytes(text.into_bytes()))
            .boxed(),
        Type::Bytes => prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(Value::Bytes)
            .boxed(),
        Type::Bool => any::<bool>()
            .prop_map(|value| Value::Varint(u64::from(value)))
            .boxed(),
        // Negative int32 values are sign-extended to ten bytes on the wire, as protobuf says.
        Type::Int32 => int32().prop_map(|v| Value::Varint(v as i64 as u64)).boxed(),
        Type::Int64 => int64().prop_map(|v| Value::Varint(v as u64)).boxed(),
        Type::Uint32 => int64()
            .prop_map(|v| Value::Varint(u64::from(v as u32)))
            .boxed(),
        Type::Uint64 => int64().prop_map(|v| Value::Varint(v as u64)).boxed(),
        Type::Sint32 => int32()
            .prop_map(|v| Value::Varint(u64::from(((v << 1) ^ (v >> 31)) as u32)))
            .boxed(),
        Type::Sint64 => int64()
            .prop_map(|v| Value::Varint(((v << 1) ^ (v >> 63)) as u64))
            .boxed(),
        Type::Fixed32 | Type::Sfixed32 | Type::Float => {
            int32().prop_map(|v| Value::Fixed32(v as u32)).boxed()
        }
        Type::Fixed64 | Type::Sfixed64 | Type::Double => {
            int64().prop_map(|v| Value::Fixed64(v as u64)).boxed()
        }
        Type::Enum => {
            let known = schema
                .enums
                .get(field.type_name())
                .cloned()
                .unwrap_or_else(|| vec![0]);
            prop_oneof![4 => select(known), 1 => int32()]
                .prop_map(|v| Value::Varint(v as i64 as u64))
                .boxed()
        }
        Type::Message if depth < DEPTH_MAX => message_at(schema, field.type_name(), depth + 1)
            .prop_map(Value::Bytes)
            .boxed(),
        Type::Message | Type::Group => return None,
    })
}

fn int64() -> BoxedStrategy<i64> {
    prop_oneof![
        2 => select(vec![0, 1, -1, 2, 7, 31, 100, 101, 200, 201, 1_000, 1_001, i64::from(i32::MAX),
            i64::from(i32::MIN), i64::from(u32::MAX), i64::MAX, i64::MIN, 1_764_547_200_000]),
        1 => -1_000i64..1_000,
        1 => any::<i64>(),
    ]
    .boxed()
}

fn int32() -> BoxedStrategy<i32> {
    prop_oneof![
        2 => select(vec![0, 1, -1, 2, 7, 31, 100, 101, 200, 201, 1_000, 1_001, 86_400, 86_401,
            i32::MAX, i32::MIN]),
        1 => -1_000i32..1_000,
        1 => any::<i32>(),
    ]
    .boxed()
}

fn string(schema: &Arc<Schema>) -> BoxedStrategy<String> {
    let dictionary = schema.dictionary.clone();
    prop_oneof![
        4 => select(dictionary.clone()),
        3 => (select(dictionary), any::<usize>(), any::<char>(), 0u8..5).prop_map(mutate),
        1 => Just(String::new()),
        1 => "[ -~]{0,40}",
        1 => any::<String>(),
        1 => "[0-9]{1,30}",
        // Long: a short arbitrary piece repeated (cheap to make, unlike 2,000 drawn characters).
        1 => (any::<String>(), 300usize..2_000).prop_map(|(piece, chars)| {
            let piece = if piece.is_empty() { "x".to_owned() } else { piece };
            piece.chars().cycle().take(chars).collect()
        }),
    ]
    .boxed()
}

/// A valid-looking value changed in one place: cut, a character inserted or replaced, the
/// value doubled, or padded with spaces.
fn mutate((text, at, character, how): (String, usize, char, u8)) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = at % (chars.len() + 1);
    match how {
        0 => chars[..at].iter().collect(),
        1 => {
            let mut chars = chars;
            chars.insert(at, character);
            chars.into_iter().collect()
        }
        2 if at < chars.len() => {
            let mut chars = chars;
            chars[at] = character;
            chars.into_iter().collect()
        }
        3 => text.repeat(2),
        _ => format!(" {text} "),
    }
}
