//! The deploy-time checks of `needs.rs` against keyhole's own engine: at
//! each limit a component loads and passes, one step over it the engine
//! refuses it and so does the check, in the user's terms. If `engine.rs`
//! changes a limit, these fail until `needs.rs` agrees.

use wasm_encoder::{
    ComponentBuilder, MemorySection, MemoryType, Module, RefType, TableSection, TableType,
};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::*;
use crate::engine::{EngineConfig, engine_config};

const PAGE: u64 = 64 << 10;

fn engine() -> Engine {
    Engine::new(&engine_config(&EngineConfig::default())).expect("engine")
}

/// A core module defining memories and tables of these initial sizes
/// (pages, elements).
fn module(memories: &[u64], tables: &[u64]) -> Module {
    let mut m = Module::new();
    if !tables.is_empty() {
        let mut section = TableSection::new();
        for &minimum in tables {
            section.table(TableType {
                element_type: RefType::FUNCREF,
                table64: false,
                minimum,
                maximum: None,
                shared: false,
            });
        }
        m.section(&section);
    }
    if !memories.is_empty() {
        let mut section = MemorySection::new();
        for &minimum in memories {
            section.memory(MemoryType {
                minimum,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
        m.section(&section);
    }
    m
}

/// A component instantiating `module` `times` times.
fn instantiating(module: &Module, times: usize) -> ComponentBuilder {
    let mut b = ComponentBuilder::default();
    let index = b.core_module(None, module);
    for _ in 0..times {
        b.core_instantiate(None, index, []);
    }
    b
}

/// Whether the engine loads `bytes`, and what the check says (limit: the
/// most a listener may have).
fn judge(engine: &Engine, bytes: &[u8]) -> (bool, Result<(), String>) {
    let limits = Limits {
        memory_bytes: MAX_MEMORY_BYTES,
        ..Limits::default()
    };
    let loads = Component::new(engine, bytes).is_ok();
    (loads, check(bytes, &limits).map_err(|e| e.to_string()))
}

/// At the limit both accept; one over, both refuse and the check says why.
fn agree(engine: &Engine, at: &[u8], over: &[u8], message: &str) {
    assert_eq!(judge(engine, at), (true, Ok(())), "at the limit");
    let (loads, checked) = judge(engine, over);
    assert!(!loads, "the engine loads a component over the limit");
    assert_eq!(checked, Err(message.to_string()));
}

#[test]
fn each_limit_agrees_with_the_engine() {
    let engine = engine();
    let max_pages = MAX_MEMORY_BYTES / PAGE;
    agree(
        &engine,
        &instantiating(&module(&[max_pages], &[]), 1).finish(),
        &instantiating(&module(&[max_pages + 1], &[]), 1).finish(),
        "the module needs 512.1 MiB of memory at start; the most a listener may have is 512 MiB",
    );
    agree(
        &engine,
        &instantiating(&module(&[], &[TABLE_ELEMENTS]), 1).finish(),
        &instantiating(&module(&[], &[TABLE_ELEMENTS + 1]), 1).finish(),
        "a table of the module starts with 100001 elements; the most a listener's table may hold is 100000",
    );
    agree(
        &engine,
        &instantiating(&module(&[1], &[]), 1).finish(),
        &instantiating(&module(&[1, 1], &[]), 1).finish(),
        "a core module of the component defines 2 memories; a listener's core modules may define at most 1",
    );
    agree(
        &engine,
        &instantiating(&module(&[], &[1]), 1).finish(),
        &instantiating(&module(&[], &[1, 1]), 1).finish(),
        "a core module of the component defines 2 tables; a listener's core modules may define at most 1",
    );
    let n = CORE_INSTANCES_PER_COMPONENT as usize;
    agree(
        &engine,
        &instantiating(&module(&[], &[]), n).finish(),
        &instantiating(&module(&[], &[]), n + 1).finish(),
        "the component has 65 core instances; the most a listener may have is 64",
    );
    let n = MEMORIES_PER_COMPONENT as usize;
    agree(
        &engine,
        &instantiating(&module(&[1], &[]), n).finish(),
        &instantiating(&module(&[1], &[]), n + 1).finish(),
        "the component has 9 core memories; the most a listener may have is 8",
    );
    let n = TABLES_PER_COMPONENT as usize;
    agree(
        &engine,
        &instantiating(&module(&[], &[1]), n).finish(),
        &instantiating(&module(&[], &[1]), n + 1).finish(),
        "the component has 17 core tables; the most a listener may have is 16",
    );
}

/// Nested components count where, and as often as, they are instantiated.
#[test]
fn nested_components_count_per_instantiation() {
    let engine = engine();
    let nested = |instances: u32| {
        let mut outer = ComponentBuilder::default();
        let inner = outer.component(None, instantiating(&module(&[1], &[]), 5));
        for _ in 0..instances {
            outer.instantiate(None, inner, Vec::<(&str, _, u32)>::new());
        }
        outer.finish()
    };
    agree(
        &engine,
        &nested(1),
        &nested(2),
        "the component has 10 core memories; the most a listener may have is 8",
    );
    // Defined but never instantiated: nothing to hold.
    assert_eq!(judge(&engine, &nested(0)), (true, Ok(())));
    let big = instantiating(&module(&[MAX_MEMORY_BYTES / PAGE + 1], &[]), 1);
    let mut outer = ComponentBuilder::default();
    let inner = outer.component(None, big);
    outer.instantiate(None, inner, Vec::<(&str, _, u32)>::new());
    let (loads, checked) = judge(&engine, &outer.finish());
    assert!(!loads);
    assert!(
        checked
            .unwrap_err()
            .starts_with("the module needs 512.1 MiB")
    );
}

/// A memory that fits the pool but not the deployment's own limit: every
/// run would fail instantiating it.
#[test]
fn a_memory_over_the_deployments_limit_is_refused() {
    let limits = |mib: u64| Limits {
        memory_bytes: mib << 20,
        ..Limits::default()
    };
    let two_mib = instantiating(&module(&[32], &[]), 1).finish();
    assert!(check(&two_mib, &limits(2)).is_ok());
    assert_eq!(
        check(&two_mib, &limits(1)).unwrap_err().to_string(),
        "the module needs 2 MiB of memory at start; this deployment's memory limit is 1 MiB"
    );
}

#[test]
fn sizes_read_in_mib() {
    assert_eq!(needed_mib(630_259_712, 512 << 20), "601 MiB");
    assert_eq!(needed_mib(1_114_112, 1 << 20), "1.1 MiB");
    assert_eq!(needed_mib((512 << 20) + PAGE, 512 << 20), "512.1 MiB");
    assert_eq!(needed_mib(3 << 20, 2 << 20), "3 MiB");
    assert_eq!(limit_mib(64 << 20), "64 MiB");
    assert_eq!(limit_mib(1_572_864 + 1), "1.5 MiB");
}

/// What does not parse is left to the compiler, which says why.
#[test]
fn a_malformed_binary_is_left_to_the_compiler() {
    let mut bytes = instantiating(&module(&[1], &[]), 1).finish();
    bytes.truncate(bytes.len() - 3);
    assert!(check(&bytes, &Limits::default()).is_ok());
}
