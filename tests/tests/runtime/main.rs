//! Runtime integration tests: real sled, real wasmtime, guests built from
//! source. Every guest has a test named after it (checked at compile time by
//! `foreach_guest!` below).

mod alloc_probe;
mod audit;
mod budget;
mod cluster;
mod deploy;
mod examples;
mod grant_binding;
mod http;
mod inject;
mod lagging;
mod lanes;
mod least_privilege;
mod lifecycle;
mod runs;
mod sandbox;
mod scrubbing;
mod sealed;
mod secrets;
mod wit_versions;

#[allow(unused_imports)]
use {
    budget::*, deploy::*, examples::*, grant_binding::*, http::*, inject::*, sandbox::*,
    scrubbing::*, secrets::*, wit_versions::*,
};

macro_rules! assert_test_exists {
    ($name:ident) => {
        const _: fn() = $name;
    };
}
keyhole_tests::foreach_guest!(assert_test_exists);
