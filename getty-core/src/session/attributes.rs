//! Typed attributes, keyed by type (like `http::Extensions`).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Mutex;

use super::lock;

#[derive(Default)]
pub(crate) struct Attributes {
    map: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl Attributes {
    pub(crate) fn insert<T: Any + Send + Sync>(&self, value: T) -> Option<T> {
        lock(&self.map)
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast::<T>().ok().map(|b| *b))
    }

    pub(crate) fn get_cloned<T: Any + Send + Sync + Clone>(&self) -> Option<T> {
        lock(&self.map)
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    }

    pub(crate) fn with<T: Any + Send + Sync, R>(&self, f: impl FnOnce(Option<&mut T>) -> R) -> R {
        let mut map = lock(&self.map);
        f(map
            .get_mut(&TypeId::of::<T>())
            .and_then(|v| v.downcast_mut::<T>()))
    }

    pub(crate) fn remove<T: Any + Send + Sync>(&self) -> Option<T> {
        lock(&self.map)
            .remove(&TypeId::of::<T>())
            .and_then(|old| old.downcast::<T>().ok().map(|b| *b))
    }
}
