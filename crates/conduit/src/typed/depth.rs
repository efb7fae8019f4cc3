//! A bound on how deeply a typed value from a peer may nest.
//!
//! postcard decodes by recursion, one set of stack frames per level of
//! nesting, and its format spends as little as one byte on a level (`Some` of
//! an `Option<Box<T>>` is `01`). So a hostile message of a few megabytes could
//! run any receiver out of stack, which aborts the whole process. [`Bounded`]
//! wraps a deserializer and every visitor, seed and access object it hands
//! out, counting the levels entered in a [`Depth`], and fails with a serde
//! error past [`MAX_DEPTH`] levels, before descending further.
//!
//! Every level of nesting goes through one `deserialize_*` call on a wrapped
//! deserializer (a value's own `Deserialize` impl calls it), so counting there
//! counts every level that can hold another, whatever the types in between.
//! Scalars hold none and are not counted.

use std::cell::Cell;

use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// Most levels a received value may nest (a struct holding a vector is two
/// levels; the scalars inside do not count). serde_json has the same default.
pub(crate) const MAX_DEPTH: u32 = 128;

/// Levels left to enter, and whether the bound was hit.
#[derive(Debug)]
pub(crate) struct Depth {
    left: Cell<u32>,
    exceeded: Cell<bool>,
}

impl Depth {
    pub(crate) fn new(max: u32) -> Depth {
        Depth {
            left: Cell::new(max),
            exceeded: Cell::new(false),
        }
    }

    /// Whether decoding failed because the value nested too deeply (postcard
    /// keeps no message of a serde error, so the caller asks here).
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.get()
    }

    fn enter<E: serde::de::Error>(&self) -> Result<Level<'_>, E> {
        match self.left.get().checked_sub(1) {
            Some(left) => {
                self.left.set(left);
                Ok(Level(self))
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom("the value nests too deeply"))
            }
        }
    }
}

/// One level entered; left when dropped, on success or error alike.
struct Level<'a>(&'a Depth);

impl Drop for Level<'_> {
    fn drop(&mut self) {
        self.0.left.set(self.0.left.get() + 1);
    }
}

/// A deserializer, visitor, seed or access object whose nested deserializers
/// count their levels in `depth`.
pub(crate) struct Bounded<'a, T> {
    inner: T,
    depth: &'a Depth,
}

impl<'a, T> Bounded<'a, T> {
    pub(crate) fn new(inner: T, depth: &'a Depth) -> Self {
        Bounded { inner, depth }
    }

    fn wrap<U>(&self, inner: U) -> Bounded<'a, U> {
        Bounded {
            inner,
            depth: self.depth,
        }
    }
}

/// `deserialize_*` methods of what can hold other values: enter a level, then
/// pass the arguments and a bounded visitor on.
macro_rules! counted {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {$(
        fn $method<V: Visitor<'de>>(
            self,
            $($arg: $ty,)*
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            let _level = self.depth.enter::<D::Error>()?;
            let visitor = self.wrap(visitor);
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

/// `deserialize_*` methods of scalars: the format hands their visitor a value,
/// never a nested deserializer, so they pass straight on, uncounted. (A
/// 1 KiB `Vec<u8>` is 1024 of them: counting each cost a typed round trip a
/// fifth of its time.)
macro_rules! scalar {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<'_, D> {
    type Error = D::Error;

    // `any` and `ignored_any` may be anything, so they count.
    counted! {
        deserialize_any() deserialize_ignored_any()
        deserialize_option() deserialize_seq() deserialize_map()
        deserialize_newtype_struct(name: &'static str)
        deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_struct(name: &'static str, fields: &'static [&'static str])
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
    }

    scalar! {
        deserialize_bool
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_identifier
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_unit_struct(name, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Visitor methods that receive a plain value: passed on as they are.
macro_rules! plain {
    ($($method:ident: $ty:ty)*) => {$(
        fn $method<E: serde::de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Bounded<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    plain! {
        visit_bool: bool
        visit_i8: i8 visit_i16: i16 visit_i32: i32 visit_i64: i64 visit_i128: i128
        visit_u8: u8 visit_u16: u16 visit_u32: u32 visit_u64: u64 visit_u128: u128
        visit_f32: f32 visit_f64: f64 visit_char: char
        visit_str: &str visit_borrowed_str: &'de str visit_string: String
        visit_bytes: &[u8] visit_borrowed_bytes: &'de [u8] visit_byte_buf: Vec<u8>
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.visit_some(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.visit_newtype_struct(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let seq = self.wrap(seq);
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let map = self.wrap(map);
        self.inner.visit_map(map)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let data = self.wrap(data);
        self.inner.visit_enum(data)
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Bounded<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.deserialize(d)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Bounded<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Bounded<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Bounded<'a, A> {
    type Error = A::Error;
    type Variant = Bounded<'a, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let seed = self.wrap(seed);
        let depth = self.depth;
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((value, Bounded::new(variant, depth)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Bounded<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// A list that nests one level per element, one byte per level in postcard.
    #[derive(Debug, Deserialize, PartialEq)]
    struct Chain(Option<Box<Chain>>);

    fn decode<'de, T: Deserialize<'de>>(
        bytes: &'de [u8],
        max: u32,
    ) -> (Result<T, postcard::Error>, bool) {
        let depth = Depth::new(max);
        let mut de = postcard::Deserializer::from_bytes(bytes);
        let value = T::deserialize(Bounded::new(&mut de, &depth));
        (value, depth.exceeded())
    }

    fn chain(levels: usize) -> Vec<u8> {
        let mut bytes = vec![1u8; levels];
        bytes.push(0);
        bytes
    }

    #[test]
    fn nesting_up_to_the_bound_decodes_and_one_more_is_refused() {
        // Each link is two levels: the newtype struct and its option.
        let (ok, exceeded) = decode::<Chain>(&chain(9), 20);
        assert!(ok.is_ok() && !exceeded, "{ok:?}");
        let (err, exceeded) = decode::<Chain>(&chain(10), 20);
        assert!(err.is_err() && exceeded, "{err:?}");
    }

    #[test]
    fn a_value_at_the_bound_fits_a_small_stack() {
        // 63 links and the last empty one: exactly MAX_DEPTH levels. Even
        // unoptimized, they fit in a quarter of a spawned thread's default
        // stack, so the bound keeps any receiving thread safe.
        let bytes = chain(MAX_DEPTH as usize / 2 - 1);
        let ok = std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(move || decode::<Chain>(&bytes, MAX_DEPTH).0.is_ok())
            .unwrap()
            .join()
            .unwrap();
        assert!(ok);
        let (err, exceeded) = decode::<Chain>(&chain(MAX_DEPTH as usize / 2), MAX_DEPTH);
        assert!(err.is_err() && exceeded);
    }

    #[test]
    fn a_hostile_chain_is_refused_without_descending() {
        // A million levels would overflow any thread's stack unbounded.
        let (err, exceeded) = decode::<Chain>(&chain(1_000_000), MAX_DEPTH);
        assert!(err.is_err() && exceeded);
    }

    #[test]
    fn every_kind_of_value_passes_through_unchanged() {
        #[derive(Debug, serde::Serialize, Deserialize, PartialEq)]
        enum Shape {
            Unit,
            New(i16),
            Tuple(u8, char),
            Struct { w: f32, tag: String },
        }
        #[derive(Debug, serde::Serialize, Deserialize, PartialEq)]
        struct Unit;
        #[derive(Debug, serde::Serialize, Deserialize, PartialEq)]
        struct Everything<'a> {
            shapes: Vec<Shape>,
            map: std::collections::BTreeMap<String, (bool, i128, u128)>,
            borrowed: &'a str,
            unit: Unit,
            nothing: Option<u64>,
            float: f64,
        }
        let value = Everything {
            shapes: vec![
                Shape::Unit,
                Shape::New(-3),
                Shape::Tuple(7, 'é'),
                Shape::Struct {
                    w: 1.5,
                    tag: "t".into(),
                },
            ],
            map: [("k".to_string(), (true, -1i128 << 100, 1u128 << 120))].into(),
            borrowed: "in place",
            unit: Unit,
            nothing: None,
            float: -0.25,
        };
        let bytes = postcard::to_stdvec(&value).unwrap();
        let (back, exceeded) = decode::<Everything>(&bytes, MAX_DEPTH);
        assert_eq!(back.unwrap(), value);
        assert!(!exceeded);
        // The depth is given back level by level: a long flat vector of
        // nested values needs no more than its deepest element.
        let wide = vec![Some(Some(1u8)); 10_000];
        let bytes = postcard::to_stdvec(&wide).unwrap();
        let (back, _) = decode::<Vec<Option<Option<u8>>>>(&bytes, 4);
        assert_eq!(back.unwrap(), wide);
    }
}
