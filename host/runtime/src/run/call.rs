//! The call phase of a run: instantiating a deployment's component and
//! calling its `handle` export.
//!
//! `bindgen!`'s generated `call_handle` takes the WIT `event` as an owned
//! record, which would cost a copy of the event's id, topic, environment
//! and payload (up to 1 MiB) per run. Here the record is lowered straight
//! from the host's [`Event`](crate::Event) through borrowed fields
//! ([`EventArg`]), and one [`InstancePre`] serves both call styles:
//!
//! - async, on a fiber: always allowed, and required when the component
//!   imports WASI (its host calls need the tokio runtime);
//! - synchronous, without a fiber: for callers whose thread may block
//!   (`emit_blocking`) and components that import only keyhole's own
//!   interfaces. This saves the fiber switch, about 1 µs per event.

use wasmtime::Store;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentType, Instance, InstancePre, Lower, TypedFunc,
};

use crate::error::RuntimeError;
use crate::event::Event;
use crate::sandbox::RunState;

/// The WIT `event` record, lowered from borrowed host data. Field names and
/// order follow `wit/listener.wit`; [`Listener::new`] checks them against
/// each component at deploy, so a mismatch is a deploy error, not a failure
/// of every run.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct EventArg<'a> {
    id: &'a str,
    topic: &'a str,
    environment: &'a str,
    space: Option<&'a str>,
    payload: &'a str,
    settings: &'a [(String, String)],
}

impl<'a> EventArg<'a> {
    /// `event` as the guest sees it, with the deployment's `settings`.
    pub(crate) fn new(event: &'a Event, settings: &'a [(String, String)]) -> Self {
        EventArg {
            id: &event.id,
            topic: &event.topic,
            environment: &event.environment,
            space: event.space.as_deref(),
            payload: &event.payload,
            settings,
        }
    }
}

type HandleParams<'a> = (EventArg<'a>,);
type HandleResults = (Result<String, String>,);
type HandleFn<'a> = TypedFunc<HandleParams<'a>, HandleResults>;

/// A linked listener component, ready to instantiate and call per event.
pub(crate) struct Listener {
    pre: InstancePre<RunState>,
    handle: ComponentExportIndex,
    /// Imports nothing but `keyhole:listener/*`: may be called synchronously.
    pure: bool,
}

impl Listener {
    /// Checks `pre` is a keyhole listener (per the generated world
    /// bindings, and its `handle` against [`EventArg`]) and finds the export.
    pub(crate) fn new(pre: InstancePre<RunState>, pure: bool) -> Result<Self, RuntimeError> {
        let wrong_world = |e: wasmtime::Error| RuntimeError::WrongWorld(format!("{e:#}"));
        crate::bindings::ListenerPre::new(pre.clone()).map_err(wrong_world)?;
        let component: &Component = pre.component();
        let Some((ComponentItem::ComponentFunc(func), handle)) =
            component.get_export(None, "handle")
        else {
            return Err(RuntimeError::WrongWorld(
                "no exported function `handle`".into(),
            ));
        };
        // The check bindgen's generated code makes, here for `EventArg`.
        func.typecheck::<HandleParams<'static>, HandleResults>(&pre.instance_type())
            .map_err(|e| wrong_world(e.context("`handle` does not match keyhole's world")))?;
        Ok(Listener { pre, handle, pure })
    }

    /// A fresh instance in `store`, and its `handle` called with `event`.
    /// `may_block`: the caller's thread may block, so a pure component runs
    /// without a fiber. The outer error is a trap or host failure; the inner
    /// result is what the guest returned.
    pub(crate) async fn instantiate_and_handle(
        &self,
        store: &mut Store<RunState>,
        event: EventArg<'_>,
        may_block: bool,
    ) -> wasmtime::Result<Result<String, String>> {
        let sync = self.runs_sync(may_block);
        let instance = if sync {
            self.pre.instantiate(&mut *store)?
        } else {
            self.pre.instantiate_async(&mut *store).await?
        };
        let handle = self.handle_of(store, instance)?;
        let (result,) = if sync {
            handle.call(&mut *store, (event,))?
        } else {
            handle.call_async(&mut *store, (event,)).await?
        };
        Ok(result)
    }

    /// The instance's `handle`, typed without checking the type again per
    /// run (about 0.1 µs).
    #[allow(unsafe_code)]
    fn handle_of<'a>(
        &self,
        store: &mut Store<RunState>,
        instance: Instance,
    ) -> wasmtime::Result<HandleFn<'a>> {
        let func = instance
            .get_func(&mut *store, self.handle)
            .ok_or_else(|| wasmtime::format_err!("no exported function `handle`"))?;
        // SAFETY: `Listener::new` checked `handle`'s type against
        // `HandleFn`'s parameters and results for this component, which is
        // the check bindgen's generated code makes before it types the
        // export the same way.
        Ok(unsafe { TypedFunc::new_unchecked(func) })
    }

    /// Whether a run for a caller that may (or may not) block is a
    /// synchronous call, without a fiber (see module docs).
    pub(crate) fn runs_sync(&self, may_block: bool) -> bool {
        may_block && self.pure
    }
}
