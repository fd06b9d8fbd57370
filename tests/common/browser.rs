//! Headless Chromium driven by Node.js and playwright-core (the scripts in tests/browser),
//! for the browser and screenshot tests. Missing tools fail the test: a browser test that
//! skips itself would let a broken script pass unnoticed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const INSTALL_HINT: &str = "run .ci/test, which installs Chromium, Node.js and the npm packages \
     of tests/browser (or set OXITRAFFIC_TEST_CHROMIUM / OXITRAFFIC_TEST_NODE)";

pub struct Tools {
    pub node: PathBuf,
    pub chromium: PathBuf,
    pub dir: PathBuf,
}

/// Finds Node.js, Chromium and an up-to-date `npm ci` of tests/browser, or fails the test.
pub fn tools() -> Tools {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node = PathBuf::from(std::env::var_os("OXITRAFFIC_TEST_NODE").unwrap_or("node".into()));
    let chromium = PathBuf::from(
        std::env::var_os("OXITRAFFIC_TEST_CHROMIUM").unwrap_or("/usr/bin/chromium".into()),
    );
    let node_works = Command::new(&node)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        node_works,
        "Node.js (`{}`) is missing: {INSTALL_HINT}",
        node.display()
    );
    assert!(
        chromium.is_file(),
        "Chromium ({}) is missing: {INSTALL_HINT}",
        chromium.display()
    );
    let version = |file: &Path, pointer: &str| -> Option<String> {
        let text = std::fs::read_to_string(file).ok()?;
        let value: Value = serde_json::from_str(&text).ok()?;
        value.pointer(pointer)?.as_str().map(str::to_string)
    };
    let wanted = version(&dir.join("package.json"), "/dependencies/playwright-core")
        .expect("tests/browser/package.json names playwright-core");
    let installed = version(
        &dir.join("node_modules/playwright-core/package.json"),
        "/version",
    );
    assert_eq!(
        installed.as_deref(),
        Some(wanted.as_str()),
        "playwright-core {wanted} is not installed in tests/browser/node_modules: {INSTALL_HINT}"
    );
    Tools {
        node,
        chromium,
        dir,
    }
}

/// Runs a script of tests/browser with a JSON argument and returns the JSON it prints.
pub fn run_script(tools: &Tools, script: &str, config: &Value) -> Value {
    let mut child = Command::new(&tools.node)
        .arg(script)
        .arg(config.to_string())
        .current_dir(&tools.dir)
        .env("OXITRAFFIC_TEST_CHROMIUM", &tools.chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", tools.node.display()));
    let read = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    // The scripts give up by themselves (after 60 or 90 s); this only guards against Node
    // itself hanging.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success(),
        "{script} failed ({status}):\n{stderr}\n{stdout}"
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}
