//! Subscriptions behave like the obvious model: a counted list of prefixes,
//! which refuses a new prefix past its limits in topics and bytes.

use conduit_proto::{ProtocolError, SubscriptionLimits, Subscriptions};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Add(Vec<u8>),
    /// `add_within` the limits of the case.
    AddWithin(Vec<u8>),
    Remove(Vec<u8>),
    Match(Vec<u8>),
}

fn topic() -> impl Strategy<Value = Vec<u8>> {
    // A small alphabet so that prefixes collide often.
    proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0u8)], 0..5)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        topic().prop_map(Op::Add),
        topic().prop_map(Op::AddWithin),
        topic().prop_map(Op::Remove),
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0u8)], 0..8)
            .prop_map(Op::Match),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn agrees_with_a_counted_list(
        ops in proptest::collection::vec(op(), 0..60),
        topics in 0usize..6,
        bytes in 0usize..12,
    ) {
        let limits = SubscriptionLimits { topics, bytes };
        let mut subs = Subscriptions::new();
        let mut model: Vec<(Vec<u8>, u32)> = Vec::new();
        for op in ops {
            let held = |model: &[(Vec<u8>, u32)]| model.iter().map(|(m, _)| m.len()).sum::<usize>();
            match op {
                Op::AddWithin(t) if !model.iter().any(|(m, _)| *m == t) => {
                    let over = if model.len() >= topics {
                        Some(ProtocolError::TooManySubscriptions { limit: topics, unit: "topics" })
                    } else if held(&model) + t.len() > bytes {
                        Some(ProtocolError::TooManySubscriptions {
                            limit: bytes,
                            unit: "bytes of topics",
                        })
                    } else {
                        None
                    };
                    match over {
                        Some(e) => prop_assert_eq!(subs.add_within(&t, limits), Err(e)),
                        None => {
                            model.push((t.clone(), 1));
                            prop_assert_eq!(subs.add_within(&t, limits), Ok(true));
                        }
                    }
                }
                Op::AddWithin(t) => {
                    // Held already: counted, whatever the limits.
                    model.iter_mut().find(|(m, _)| *m == t).unwrap().1 += 1;
                    prop_assert_eq!(subs.add_within(&t, limits), Ok(false));
                }
                Op::Add(t) => {
                    let first = match model.iter_mut().find(|(m, _)| *m == t) {
                        Some(entry) => { entry.1 += 1; false }
                        None => { model.push((t.clone(), 1)); true }
                    };
                    prop_assert_eq!(subs.add(&t), first);
                }
                Op::Remove(t) => {
                    let last = match model.iter().position(|(m, _)| *m == t) {
                        Some(i) => {
                            model[i].1 -= 1;
                            if model[i].1 == 0 { model.remove(i); true } else { false }
                        }
                        None => false,
                    };
                    prop_assert_eq!(subs.remove(&t), last);
                }
                Op::Match(data) => {
                    let expected = model.iter().any(|(m, _)| data.starts_with(m));
                    prop_assert_eq!(subs.matches(&data), expected);
                }
            }
            prop_assert_eq!(subs.len(), model.len());
            prop_assert_eq!(subs.bytes(), held(&model));
        }
    }
}
