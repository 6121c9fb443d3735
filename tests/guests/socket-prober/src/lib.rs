//! See README.md.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

impl Guest for Listener {
    fn handle(_event: Event) -> Result<String, String> {
        match std::net::TcpStream::connect("127.0.0.1:7700") {
            Ok(_) => Ok("connected".into()),
            Err(e) => Err(format!("connect failed: {e}")),
        }
    }
}
