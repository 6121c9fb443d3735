//! See README.md.
wit_bindgen::generate!({
    inline: "package test:other; world other { export run: func() -> u32; }",
    world: "other",
});

struct Other;
export!(Other);

impl Guest for Other {
    fn run() -> u32 {
        7
    }
}
