//! [`Context`]: the warm clients a worker keeps for its whole life.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;

use crate::Resource;

type Slot = (TypeId, Option<&'static str>);

/// A small map of warm clients, keyed by type and, for two fields of one type, by name.
///
/// A worker opens its clients once, keeps them in a `Context`, and builds each job's parts
/// with `Parts::from_context(spec, &ctx)`: the job borrows (clones the handle of) what the
/// context holds and opens only what it lacks, so jobs reuse warm connections.
///
/// ```
/// use dual_mode::Context;
///
/// let ctx = Context::new()
///     .with(String::from("unkeyed"))
///     .with_keyed("replica", String::from("keyed"));
/// assert_eq!(ctx.get::<String>().as_deref(), Some("unkeyed"));
/// assert_eq!(ctx.get_keyed::<String>("replica").as_deref(), Some("keyed"));
/// assert_eq!(ctx.get::<u32>(), None);
/// ```
#[derive(Default)]
pub struct Context {
    items: HashMap<Slot, Box<dyn Any + Send + Sync>>,
}

impl Context {
    /// An empty context.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a client for unkeyed fields of its type, replacing any earlier one.
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) -> &mut Self {
        self.items.insert((TypeId::of::<T>(), None), Box::new(value));
        self
    }

    /// Adds a client for fields marked `key = "<key>"`, replacing any earlier one.
    pub fn insert_keyed<T: Clone + Send + Sync + 'static>(&mut self, key: &'static str, value: T) -> &mut Self {
        self.items.insert((TypeId::of::<T>(), Some(key)), Box::new(value));
        self
    }

    /// [`insert`](Self::insert), by value.
    #[must_use]
    pub fn with<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.insert(value);
        self
    }

    /// [`insert_keyed`](Self::insert_keyed), by value.
    #[must_use]
    pub fn with_keyed<T: Clone + Send + Sync + 'static>(mut self, key: &'static str, value: T) -> Self {
        self.insert_keyed(key, value);
        self
    }

    /// Opens a resource and adds it for unkeyed fields of its type.
    ///
    /// # Errors
    ///
    /// The resource's own error when it cannot be opened.
    pub async fn open<T: Resource + Clone>(&mut self, config: &T::Config) -> Result<&mut Self, T::Error> {
        let value = T::open(config).await?;
        Ok(self.insert(value))
    }

    /// A clone of the unkeyed client of type `T`, if the context has one.
    #[must_use]
    pub fn get<T: Clone + 'static>(&self) -> Option<T> {
        self.lookup((TypeId::of::<T>(), None))
    }

    /// A clone of the client of type `T` under `key`, if the context has one.
    #[must_use]
    pub fn get_keyed<T: Clone + 'static>(&self, key: &'static str) -> Option<T> {
        self.lookup((TypeId::of::<T>(), Some(key)))
    }

    /// How many clients the context holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the context holds no client.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn lookup<T: Clone + 'static>(&self, slot: Slot) -> Option<T> {
        self.items.get(&slot).and_then(|v| v.downcast_ref::<T>()).cloned()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("clients", &self.items.len()).finish()
    }
}

/// The client of type `T` under `key` (`None`: unkeyed) in `ctx`, if it has one. For
/// generated code, which knows each field's key.
#[must_use]
pub fn slot<T: Clone + 'static>(ctx: &Context, key: Option<&'static str>) -> Option<T> {
    ctx.lookup((TypeId::of::<T>(), key))
}
