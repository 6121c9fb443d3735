//! The web console in a real browser: Debian's headless Chromium, driven
//! over WebDriver (ChromeDriver) with `fantoccini`, against `keyhole serve`.
//!
//! One walk through what a user does: a wrong token is refused, sign in,
//! create an environment, set a secret in its Developer Settings, create a
//! space, override the secret there (inherited, then overridden), revert,
//! deploy a listener by uploading its `.wasm`, send it a test event, read
//! the run, look at the audit log and the tokens, sign out. After every
//! save the page source, the DOM and every form field's value are searched
//! for the planted values; axe-core (npm, `tests/browser`) runs in each
//! page and must find no serious or critical violation; each page is saved
//! as a screenshot (`CARGO_TARGET_TMPDIR/console-screenshots`, or the
//! directory `KEYHOLE_SCREENSHOTS` names: `docs/console` for the README).
//!
//! Without `chromium` and `chromedriver` the test says so and passes,
//! unless `KEYHOLE_REQUIRE_BROWSER` is set (CI sets it), when it fails.

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Install, Server, token_from};
use fantoccini::{Client, ClientBuilder, Locator};
use keyhole_tests::SECRET_READER;

const PLANT_ENV: &str = "kh-plant-env-Q7f3a9c1d2e4b6";
const PLANT_SPACE: &str = "kh-plant-space-Z8e2b4d6f1a3c5";

/// The binaries, if installed.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        names
            .iter()
            .map(|n| Path::new("/usr/bin").join(n))
            .find(|p| p.exists())
    };
    let found = find(&["chromium", "chromium-browser"]).zip(find(&["chromedriver"]));
    if found.is_none() {
        assert!(
            std::env::var_os("KEYHOLE_REQUIRE_BROWSER").is_none(),
            "KEYHOLE_REQUIRE_BROWSER is set but chromium or chromedriver is missing \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: chromium and chromium-driver are not installed");
    }
    found
}

/// axe-core's script, installed by `scripts/test.sh` (`npm ci` in
/// `tests/browser`).
fn axe_source() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is not installed at {} ({e}): run `npm ci` in tests/browser \
             (scripts/test.sh does)",
            path.display()
        )
    })
}

/// ChromeDriver on a free loopback port, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(binary: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // In a process group of its own, so that dropping it also ends the
        // browser it started, even when the test panicked mid-session.
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// FNV-1a 64, as `tests/guests/secret-reader` reports what it read.
fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// The browser session and what each page is checked with.
struct Session {
    c: Client,
    base: String,
    axe: String,
    shots: PathBuf,
}

impl Session {
    async fn goto(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    async fn path(&self) -> String {
        let url = self.c.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self
            .c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// Clicks what `css` finds and waits (at most 60 s) for the page it
    /// leads to: the old document is marked, and the wait ends when a
    /// loaded document without the mark is there (a click can return
    /// before its navigation starts).
    async fn click(&self, css: &str) {
        self.navigate(css, None).await;
    }

    /// Types `text` and Enter into the field `css` finds (a form sent with
    /// the keyboard alone), then waits as [`Session::click`] does.
    async fn type_and_enter(&self, css: &str, text: &str) {
        self.navigate(css, Some(text)).await;
    }

    async fn navigate(&self, css: &str, typed: Option<&str>) {
        self.c
            .execute("window.__khOld = true;", vec![])
            .await
            .unwrap();
        let e = self
            .c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        match typed {
            None => e.click().await.unwrap(),
            Some(text) => {
                e.clear().await.unwrap();
                e.send_keys(&format!("{text}\u{E007}")).await.unwrap();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let fresh = self
                .c
                .execute(
                    "return window.__khOld === undefined && document.readyState === 'complete';",
                    vec![],
                )
                .await
                .is_ok_and(|v| v.as_bool() == Some(true));
            if fresh {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "clicking {css} led to no new page"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn source(&self) -> String {
        self.c.source().await.unwrap()
    }

    /// Neither planted value is in the page source, the live DOM or any
    /// field's current value.
    async fn assert_clean(&self, when: &str) {
        let dom = self
            .c
            .execute(
                "return document.documentElement.outerHTML + '\\n' + \
                 Array.from(document.querySelectorAll('input, textarea, select'))\
                 .map(e => e.value).join('\\n');",
                vec![],
            )
            .await
            .unwrap();
        let dom = dom.as_str().unwrap_or_default().to_owned();
        let source = self.source().await;
        for plant in [PLANT_ENV, PLANT_SPACE] {
            assert!(
                !source.contains(plant),
                "{when}: a value in the page source"
            );
            assert!(!dom.contains(plant), "{when}: a value in the DOM");
        }
    }

    /// axe-core finds no serious or critical violation; a screenshot.
    async fn check_page(&self, name: &str) {
        self.c.execute(&self.axe, vec![]).await.unwrap();
        let found = self
            .c
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 axe.run(document).then(r => done(r.violations.map(v => \
                   ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.html)}))))\
                 .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e)}]));",
                vec![],
            )
            .await
            .unwrap();
        let bad: Vec<_> = found
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect();
        assert!(bad.is_empty(), "axe-core on {name}: {bad:#?}");
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }
}

#[test]
fn the_console_in_headless_chromium() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let axe = axe_source();
    let k = Install::new();
    let token = token_from(&k.init());
    let server = Server::start(&k, &token, &[]);
    let driver = Driver::start(&chromedriver);
    let shots = std::env::var_os("KEYHOLE_SCREENSHOTS").map_or_else(
        || Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&shots).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a WebDriver session with headless Chromium");
        let s = Session {
            c,
            base: server.base.clone(),
            axe,
            shots: shots.clone(),
        };
        walk(&s, &token).await;
        s.c.close().await.unwrap();
    });

    // Nothing on disk or in the daemon's files holds a value in clear.
    let status = server.terminate();
    assert!(status.success());
    for entry in walk_files(&k.data) {
        let bytes = std::fs::read(&entry).unwrap();
        for plant in [PLANT_ENV, PLANT_SPACE] {
            assert!(
                !bytes.windows(plant.len()).any(|w| w == plant.as_bytes()),
                "{} holds a value in clear",
                entry.display()
            );
        }
    }
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

async fn walk(s: &Session, token: &str) {
    // Sign-in: a wrong token is refused, the right one lands on the console.
    s.goto("/environments").await;
    assert_eq!(
        s.path().await,
        "/signin",
        "signed out, pages lead to sign-in"
    );
    s.check_page("signin").await;
    s.fill("#token", "kh_not-a-token").await;
    s.click("form[action='/signin'] button").await;
    assert!(s.source().await.contains("That token was not accepted"));
    // By keyboard alone: the token, then Enter.
    s.type_and_enter("#token", token).await;
    assert_eq!(s.path().await, "/environments");
    s.check_page("environments").await;

    // An environment and its Developer Settings.
    s.fill("#env-id", "prod").await;
    s.click("form[action='/environments'] button").await;
    assert_eq!(s.path().await, "/environments/prod?done=env-created");
    s.fill("#secret-name", "API_KEY").await;
    s.fill("#secret-value", PLANT_ENV).await;
    s.click("form[action='/environments/prod/secrets'] button")
        .await;
    assert_eq!(s.path().await, "/environments/prod?done=secret-saved");
    let page = s.source().await;
    assert!(page.contains("<code>API_KEY</code>") && page.contains("token:admin"));
    s.assert_clean("after setting an environment secret").await;
    s.check_page("developer-settings").await;

    // A space inherits it; override, then revert.
    s.fill("#space-id", "s1").await;
    s.click("form[action='/environments/prod/spaces'] button")
        .await;
    assert_eq!(s.path().await, "/spaces/s1/secrets?done=space-created");
    assert!(s.source().await.contains("Inherited"));
    s.fill("#override-API_KEY", PLANT_SPACE).await;
    s.click("td form[action='/spaces/s1/secrets'] button").await;
    assert_eq!(s.path().await, "/spaces/s1/secrets?done=override-saved");
    let page = s.source().await;
    assert!(page.contains("Overridden") && !page.contains(">Inherited<"));
    s.assert_clean("after overriding in the space").await;
    s.check_page("space-secrets").await;
    s.click("form[action='/spaces/s1/secrets/API%5FKEY/revert'] button")
        .await;
    assert_eq!(s.path().await, "/spaces/s1/secrets?done=reverted");
    assert!(s.source().await.contains("Inherited"));
    s.assert_clean("after reverting").await;

    // The reverted override is kept in its history: undelete it, then
    // revert again.
    s.goto("/secrets/space:s1:API_KEY/history").await;
    let page = s.source().await;
    assert!(page.contains("Deleted (can be undeleted)"), "{page}");
    s.assert_clean("on a secret's history").await;
    s.check_page("versions").await;
    s.click("form[action$='/undelete'] button").await;
    assert!(s.path().await.ends_with("/history?done=undeleted"));
    assert!(s.source().await.contains(">Current<"));
    s.goto("/spaces/s1/secrets").await;
    assert!(s.source().await.contains("Overridden"));
    s.click("form[action='/spaces/s1/secrets/API%5FKEY/revert'] button")
        .await;
    assert!(s.source().await.contains("Inherited"));

    // A second value for the environment's secret, then back to the
    // first from its history (the version forms once refused every
    // version number: `console_hostile.rs`).
    s.goto("/environments/prod").await;
    s.fill("#secret-name", "API_KEY").await;
    s.fill("#secret-value", &format!("{PLANT_ENV}-second"))
        .await;
    s.click("form[action='/environments/prod/secrets'] button")
        .await;
    assert_eq!(s.path().await, "/environments/prod?done=secret-saved");
    s.goto("/secrets/env:prod:API_KEY/history").await;
    s.click("form[action$='/rollback'] button").await;
    assert!(
        s.path().await.ends_with("/history?done=rolled-back"),
        "{}",
        s.source().await
    );
    s.assert_clean("after a rollback").await;

    // Deploy by upload, send a test event, read its run.
    s.goto("/listeners").await;
    s.check_page("listeners").await;
    let module = std::fs::canonicalize(SECRET_READER).unwrap();
    s.c.find(Locator::Css("#l-module"))
        .await
        .unwrap()
        .send_keys(module.to_str().unwrap())
        .await
        .unwrap();
    s.fill("#l-name", "reader").await;
    s.fill("#l-env", "prod").await;
    s.fill("#l-space", "s1").await;
    s.fill("#l-topics", "test").await;
    s.click("form[action='/listeners'] button").await;
    assert_eq!(s.path().await, "/listeners/reader?done=deployed");
    assert!(s.source().await.contains("Module sha256"));
    s.check_page("listener").await;
    s.fill("#t-payload", r#"{"reads": [{"name": "API_KEY"}]}"#)
        .await;
    s.click("form[action='/listeners/reader/test'] button")
        .await;
    assert!(s.path().await.starts_with("/runs?eventId="));
    assert!(s.source().await.contains(">ok<"), "the run is listed as ok");
    s.check_page("runs").await;
    s.click("tbody a[href^='/runs/']").await;
    let run = s.source().await;
    assert!(run.contains("API_KEY"), "the run names the secret it read");
    assert!(
        run.contains(&fnv(PLANT_ENV)),
        "the space reads the environment's value again after the revert"
    );
    s.assert_clean("on the run's page").await;
    s.check_page("run").await;

    // The audit log shows the admin actions; tokens.
    s.goto("/audit").await;
    let audit = s.source().await;
    assert!(audit.contains("The chain verifies"));
    for action in [
        "console.signin",
        "environment.create",
        "secret.set",
        "secret.delete",
        "listener.deploy",
    ] {
        assert!(audit.contains(action), "the audit page lists {action}");
    }
    s.assert_clean("on the audit page").await;
    s.check_page("audit").await;
    s.goto("/tokens").await;
    s.fill("#t-name", "ci").await;
    s.click("form[action='/tokens'] button").await;
    let shown =
        s.c.find(Locator::Css("#new-token"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default();
    assert!(
        shown.starts_with("kh_"),
        "the new token is shown: {shown:?}"
    );
    s.check_page("tokens").await;
    s.goto("/tokens").await;
    let again = s.source().await;
    assert!(
        again.contains(">ci<") && !again.contains(&shown),
        "shown once only"
    );

    // Sign out: the session is gone.
    s.click("form[action='/signout'] button").await;
    assert_eq!(s.path().await, "/signin");
    s.goto("/environments").await;
    assert_eq!(s.path().await, "/signin");
}
