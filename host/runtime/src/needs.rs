//! What a component needs of the engine before it can run at all, checked
//! at deploy against what a listener may have.
//!
//! wasmtime's pooling allocator refuses, when a component is loaded, one
//! whose core modules need more than an instance slot holds: a memory that
//! starts above the slot's size, a table that starts with more elements,
//! more memories, tables or core instances than an instance may have. A
//! run's limiter refuses, at every instantiation, a memory that starts above
//! the deployment's own limit. Either way the module can never run, and the
//! engine says so in its own terms, as an engine failure (a 500 from the
//! API). So deploy reads those needs from the binary itself, before the
//! engine does, by walking the component's core modules with `wasmparser`
//! (the version wasmtime parses with), and refuses with a message in the
//! user's units ([`RuntimeError::ExceedsLimits`]). No engine error text is
//! looked at.
//!
//! The walk counts what wasmtime counts: every core instantiation of a
//! module, following nested components where they are instantiated. A
//! module it cannot follow statically (imported, or exported by a component
//! instance) counts as an instance with no memories or tables; wasmtime
//! still checks it. A binary the parser rejects is left to the compiler,
//! which validates it and says why. Not checked here: the size of an
//! instance's `VMContext` (1 MiB), which takes tens of thousands of imports,
//! globals or functions in tables to exceed.
//!
//! The limits mirror `engine.rs` (and wasmtime's defaults where it sets
//! none); the tests below load components at and just over each limit into
//! keyhole's own engine, so the two cannot drift apart unnoticed.

use std::rc::Rc;

use wasmparser::{
    ComponentAlias, ComponentExternalKind, ComponentInstance, ComponentOuterAliasKind,
    ComponentTypeRef, Encoding, Instance, MemoryType, Parser, Payload,
};

use crate::deploy::Limits;
use crate::engine::MAX_MEMORY_BYTES;
use crate::error::RuntimeError;

/// Elements a table may start with (and grow to): the pool's
/// `table_elements` in `engine.rs`, and the run limiter's (`run/setup.rs`).
pub(crate) const TABLE_ELEMENTS: u64 = 100_000;
/// Memories and tables one core module may define: wasmtime's
/// `max_memories_per_module` and `max_tables_per_module` defaults, which
/// `engine.rs` keeps.
const MEMORIES_PER_MODULE: usize = 1;
const TABLES_PER_MODULE: usize = 1;
/// Per component, as `engine.rs` configures the pool.
const CORE_INSTANCES_PER_COMPONENT: u64 = 64;
const MEMORIES_PER_COMPONENT: u64 = 8;
const TABLES_PER_COMPONENT: u64 = 16;

/// Refuses `component` if the engine could never instantiate it, or if its
/// memory starts above `limits`.
pub(crate) fn check(component: &[u8], limits: &Limits) -> Result<(), RuntimeError> {
    let Some(total) = walk(component, limits)? else {
        return Ok(());
    };
    let over = |what: &str, n: u64, most: u64| {
        Err(RuntimeError::ExceedsLimits(format!(
            "the component has {n} core {what}; the most a listener may have is {most}"
        )))
    };
    if total.instances > CORE_INSTANCES_PER_COMPONENT {
        return over("instances", total.instances, CORE_INSTANCES_PER_COMPONENT);
    }
    if total.memories > MEMORIES_PER_COMPONENT {
        return over("memories", total.memories, MEMORIES_PER_COMPONENT);
    }
    if total.tables > TABLES_PER_COMPONENT {
        return over("tables", total.tables, TABLES_PER_COMPONENT);
    }
    Ok(())
}

/// What one core module defines (imported memories and tables are counted
/// where they are defined).
#[derive(Default)]
struct ModuleNeeds {
    /// Each defined memory's initial size in bytes.
    memories: Vec<u64>,
    /// Each defined table's initial elements.
    tables: Vec<u64>,
}

/// What instantiating a component (or the part walked so far) creates.
#[derive(Clone, Copy, Default)]
struct Cost {
    instances: u64,
    memories: u64,
    tables: u64,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.instances = self.instances.saturating_add(other.instances);
        self.memories = self.memories.saturating_add(other.memories);
        self.tables = self.tables.saturating_add(other.tables);
    }
}

/// A component being walked: its module and component index spaces (`None`
/// where the walk cannot follow the item) and what its instantiations cost.
#[derive(Default)]
struct ComponentFrame {
    modules: Vec<Option<Rc<ModuleNeeds>>>,
    components: Vec<Option<Cost>>,
    cost: Cost,
}

enum Frame {
    Module(ModuleNeeds),
    Component(ComponentFrame),
}

/// The whole component's cost, checking each module as it is instantiated;
/// `None` if the binary does not parse to its end.
fn walk(bytes: &[u8], limits: &Limits) -> Result<Option<Cost>, RuntimeError> {
    let mut stack: Vec<Frame> = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else {
            return Ok(None);
        };
        let Some(step) = visit(&mut stack, payload, limits)? else {
            return Ok(None);
        };
        if let Step::Done(total) = step {
            return Ok(Some(total));
        }
    }
    Ok(None)
}

enum Step {
    Continue,
    Done(Cost),
}

/// Applies one payload to the walk; `None` when the binary is malformed.
fn visit(
    stack: &mut Vec<Frame>,
    payload: Payload<'_>,
    limits: &Limits,
) -> Result<Option<Step>, RuntimeError> {
    match payload {
        Payload::Version { encoding, .. } => stack.push(match encoding {
            Encoding::Module => Frame::Module(ModuleNeeds::default()),
            Encoding::Component => Frame::Component(ComponentFrame::default()),
        }),
        Payload::MemorySection(reader) => {
            let Some(Frame::Module(module)) = stack.last_mut() else {
                return Ok(None);
            };
            for memory in reader {
                let Ok(memory) = memory else { return Ok(None) };
                module.memories.push(initial_bytes(&memory));
            }
        }
        Payload::TableSection(reader) => {
            let Some(Frame::Module(module)) = stack.last_mut() else {
                return Ok(None);
            };
            for table in reader {
                let Ok(table) = table else { return Ok(None) };
                module.tables.push(table.ty.initial);
            }
        }
        Payload::ComponentImportSection(reader) => {
            let Some(Frame::Component(c)) = stack.last_mut() else {
                return Ok(None);
            };
            for import in reader {
                let Ok(import) = import else { return Ok(None) };
                match import.ty {
                    ComponentTypeRef::Module(_) => c.modules.push(None),
                    ComponentTypeRef::Component(_) => c.components.push(None),
                    _ => {}
                }
            }
        }
        Payload::ComponentAliasSection(reader) => {
            for alias in reader {
                let Ok(alias) = alias else { return Ok(None) };
                if !alias_into(stack, &alias) {
                    return Ok(None);
                }
            }
        }
        Payload::ComponentExportSection(reader) => {
            let Some(Frame::Component(c)) = stack.last_mut() else {
                return Ok(None);
            };
            // An export adds the item to its index space again.
            for export in reader {
                let Ok(export) = export else { return Ok(None) };
                let index = export.index as usize;
                match export.kind {
                    ComponentExternalKind::Module => {
                        c.modules.push(c.modules.get(index).cloned().flatten())
                    }
                    ComponentExternalKind::Component => c
                        .components
                        .push(c.components.get(index).copied().flatten()),
                    _ => {}
                }
            }
        }
        Payload::InstanceSection(reader) => {
            let Some(Frame::Component(c)) = stack.last_mut() else {
                return Ok(None);
            };
            for instance in reader {
                let Ok(instance) = instance else {
                    return Ok(None);
                };
                if let Instance::Instantiate { module_index, .. } = instance {
                    c.cost.instances += 1;
                    if let Some(Some(module)) = c.modules.get(module_index as usize) {
                        check_module(module, limits)?;
                        c.cost.memories += module.memories.len() as u64;
                        c.cost.tables += module.tables.len() as u64;
                    }
                }
            }
        }
        Payload::ComponentInstanceSection(reader) => {
            let Some(Frame::Component(c)) = stack.last_mut() else {
                return Ok(None);
            };
            for instance in reader {
                let Ok(instance) = instance else {
                    return Ok(None);
                };
                if let ComponentInstance::Instantiate {
                    component_index, ..
                } = instance
                    && let Some(Some(cost)) = c.components.get(component_index as usize)
                {
                    let cost = *cost;
                    c.cost.add(cost);
                }
            }
        }
        Payload::End(_) => match (stack.pop(), stack.last_mut()) {
            (Some(Frame::Module(m)), Some(Frame::Component(parent))) => {
                parent.modules.push(Some(Rc::new(m)));
            }
            (Some(Frame::Component(c)), Some(Frame::Component(parent))) => {
                parent.components.push(Some(c.cost));
            }
            (Some(Frame::Component(c)), None) => return Ok(Some(Step::Done(c.cost))),
            _ => return Ok(None),
        },
        _ => {}
    }
    Ok(Some(Step::Continue))
}

/// Adds what `alias` introduces to the current component's index spaces;
/// `false` if it points outside the walk.
fn alias_into(stack: &mut [Frame], alias: &ComponentAlias<'_>) -> bool {
    use ComponentExternalKind as Kind;
    let added = match *alias {
        ComponentAlias::InstanceExport { kind, .. } => match kind {
            Kind::Module => Some(Item::Module(None)),
            Kind::Component => Some(Item::Component(None)),
            _ => None,
        },
        ComponentAlias::CoreInstanceExport { .. } => None,
        ComponentAlias::Outer { kind, count, index } => {
            let outer = stack
                .len()
                .checked_sub(1 + count as usize)
                .and_then(|i| stack.get(i));
            let Some(Frame::Component(outer)) = outer else {
                return false;
            };
            let index = index as usize;
            match kind {
                ComponentOuterAliasKind::CoreModule => {
                    Some(Item::Module(outer.modules.get(index).cloned().flatten()))
                }
                ComponentOuterAliasKind::Component => Some(Item::Component(
                    outer.components.get(index).copied().flatten(),
                )),
                _ => None,
            }
        }
    };
    let Some(Frame::Component(c)) = stack.last_mut() else {
        return false;
    };
    match added {
        Some(Item::Module(m)) => c.modules.push(m),
        Some(Item::Component(cost)) => c.components.push(cost),
        None => {}
    }
    true
}

/// A module or component an alias adds, if the walk can follow it.
enum Item {
    Module(Option<Rc<ModuleNeeds>>),
    Component(Option<Cost>),
}

/// Refuses a module no instance slot can hold, or whose memory starts above
/// the deployment's limit (every run would fail instantiating it).
fn check_module(module: &ModuleNeeds, limits: &Limits) -> Result<(), RuntimeError> {
    let refuse = |m: String| Err(RuntimeError::ExceedsLimits(m));
    if module.memories.len() > MEMORIES_PER_MODULE {
        return refuse(format!(
            "a core module of the component defines {} memories; a listener's core modules may define at most {MEMORIES_PER_MODULE}",
            module.memories.len()
        ));
    }
    if module.tables.len() > TABLES_PER_MODULE {
        return refuse(format!(
            "a core module of the component defines {} tables; a listener's core modules may define at most {TABLES_PER_MODULE}",
            module.tables.len()
        ));
    }
    for &bytes in &module.memories {
        if bytes > MAX_MEMORY_BYTES {
            return refuse(format!(
                "the module needs {} of memory at start; the most a listener may have is {}",
                needed_mib(bytes, MAX_MEMORY_BYTES),
                limit_mib(MAX_MEMORY_BYTES)
            ));
        }
        if bytes > limits.memory_bytes {
            return refuse(format!(
                "the module needs {} of memory at start; this deployment's memory limit is {}",
                needed_mib(bytes, limits.memory_bytes),
                limit_mib(limits.memory_bytes)
            ));
        }
    }
    for &elements in &module.tables {
        if elements > TABLE_ELEMENTS {
            return refuse(format!(
                "a table of the module starts with {elements} elements; the most a listener's table may hold is {TABLE_ELEMENTS}"
            ));
        }
    }
    Ok(())
}

/// A memory's initial size in bytes (any page size).
fn initial_bytes(memory: &MemoryType) -> u64 {
    let page = 1u64
        .checked_shl(memory.page_size_log2())
        .unwrap_or(u64::MAX);
    memory.initial.saturating_mul(page)
}

const MIB: u64 = 1 << 20;

/// `bytes`, over `limit`, in MiB: whole when that still reads as more than
/// the limit (630,259,712 bytes against 512 MiB is "601 MiB"), else rounded
/// up to a tenth (1,114,112 bytes against 1 MiB is "1.1 MiB").
fn needed_mib(bytes: u64, limit: u64) -> String {
    let whole = bytes / MIB;
    if bytes.is_multiple_of(MIB) || whole.saturating_mul(MIB) > limit {
        format!("{whole} MiB")
    } else {
        let tenths = (u128::from(bytes) * 10).div_ceil(u128::from(MIB));
        format!("{}.{} MiB", tenths / 10, tenths % 10)
    }
}

/// A limit in MiB, rounded down to a tenth where it is not whole.
fn limit_mib(bytes: u64) -> String {
    if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        let tenths = u128::from(bytes) * 10 / u128::from(MIB);
        format!("{}.{} MiB", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
#[path = "needs_tests.rs"]
mod tests;
