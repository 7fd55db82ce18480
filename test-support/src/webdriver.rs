//! A headless Chromium driven over W3C `WebDriver` (`chromedriver`): the few commands a test of
//! a web page needs, on reqwest.

use std::fmt;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::{TempDir, free_port};

/// How long `chromedriver` gets to answer its status, and Chromium to start a session.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a find waits for its element to appear.
const IMPLICIT_WAIT: Duration = Duration::from_secs(10);

/// The W3C key under which an element reference is sent and received.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Chromium's flags: headless, and nothing that reaches for the network on its own (on a
/// machine without network access, these stall a start for many seconds).
const CHROMIUM_ARGS: [&str; 13] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-crash-reporter",
    "--disable-breakpad",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
];

/// Why the browser could not start or a command failed.
#[derive(Debug)]
pub enum WebDriverError {
    /// There is no `chromedriver` on the `PATH`.
    NotInstalled,
    /// `chromedriver` could not be started.
    Io(io::Error),
    /// `chromedriver` did not get ready in time, or the session did not start.
    NotReady(String),
    /// A command failed: what was asked, and the driver's answer.
    Command {
        /// The command, e.g. `POST element`.
        what: String,
        /// Its error answer (or the transport error).
        answer: String,
    },
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInstalled => f.write_str(
                "chromedriver is not installed (not on the PATH): install Chromium and its driver, \
                 `apt-get install -y chromium chromium-driver` (.ci/run does)",
            ),
            Self::Io(e) => write!(f, "cannot start chromedriver: {e}"),
            Self::NotReady(why) => write!(f, "the browser did not start: {why}"),
            Self::Command { what, answer } => write!(f, "WebDriver {what} failed: {answer}"),
        }
    }
}

impl std::error::Error for WebDriverError {}

/// An element found on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(String);

/// One headless Chromium session behind its own `chromedriver` on a free loopback port, with a
/// fresh profile directory. [`Browser::quit`] ends it; dropping it kills the driver's process
/// group (the driver and the browser it started).
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    profile: TempDir,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser").field("session", &self.session).finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session.
    ///
    /// # Errors
    /// [`WebDriverError::NotInstalled`] without `chromedriver`, or the browser did not start.
    pub async fn start() -> Result<Self, WebDriverError> {
        let port = free_port().map_err(WebDriverError::Io)?;
        let profile = TempDir::new("chromium").map_err(WebDriverError::Io)?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: dropping the browser kills the driver and Chromium together.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound { WebDriverError::NotInstalled } else { WebDriverError::Io(e) }
            })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| WebDriverError::NotReady(format!("HTTP client: {e}")))?;
        let mut browser = Self { http, session: format!("http://127.0.0.1:{port}/session"), driver, profile };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = browser.http.get(format!("http://127.0.0.1:{port}/status")).send().await;
            if let Ok(resp) = ready
                && let Ok(v) = resp.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            if let Ok(Some(exit)) = browser.driver.try_wait() {
                return Err(WebDriverError::NotReady(format!("chromedriver exited ({exit})")));
            }
            if Instant::now() > deadline {
                return Err(WebDriverError::NotReady(format!("chromedriver not ready within {START_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", browser.profile.0.display()));
        let mut options = json!({ "args": args });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options, "pageLoadStrategy": "normal"
        } } });
        let created = browser.call(reqwest::Method::POST, "", Some(caps), "new session").await?;
        let id = created["sessionId"]
            .as_str()
            .ok_or_else(|| WebDriverError::NotReady(format!("no session id in {created}")))?;
        browser.session = format!("{}/{id}", browser.session);
        // A find waits up to this long for its element: a click that submits a form returns
        // before the next page is there.
        let timeouts = json!({ "implicit": IMPLICIT_WAIT.as_millis() });
        browser.call(reqwest::Method::POST, "/timeouts", Some(timeouts), "set timeouts").await?;
        Ok(browser)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        what: &str,
    ) -> Result<Value, WebDriverError> {
        let fail = |answer: String| WebDriverError::Command { what: what.to_owned(), answer };
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        // Commands without parameters still send an empty object, as the protocol wants.
        req = req.json(&body.unwrap_or_else(|| json!({})));
        let resp = req.send().await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("{status}: {}", v["value"])));
        }
        Ok(v["value"].clone())
    }

    /// Opens `url` and waits for it to load.
    ///
    /// # Errors
    /// The navigation failed.
    pub async fn goto(&self, url: &str) -> Result<(), WebDriverError> {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })), &format!("navigate to {url}")).await?;
        Ok(())
    }

    /// The URL the browser shows.
    ///
    /// # Errors
    /// The command failed.
    pub async fn url(&self) -> Result<String, WebDriverError> {
        Ok(self.call(reqwest::Method::GET, "/url", None, "get URL").await?.as_str().unwrap_or_default().to_owned())
    }

    /// The first element matching the CSS selector.
    ///
    /// # Errors
    /// No element matches (`no such element`), or the command failed.
    pub async fn find(&self, css: &str) -> Result<Element, WebDriverError> {
        let body = json!({ "using": "css selector", "value": css });
        let v = self.call(reqwest::Method::POST, "/element", Some(body), &format!("find {css:?}")).await?;
        element(&v).ok_or_else(|| WebDriverError::Command { what: format!("find {css:?}"), answer: v.to_string() })
    }

    /// Every element matching the CSS selector.
    ///
    /// # Errors
    /// The command failed.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>, WebDriverError> {
        let body = json!({ "using": "css selector", "value": css });
        let v = self.call(reqwest::Method::POST, "/elements", Some(body), &format!("find all {css:?}")).await?;
        Ok(v.as_array().map(|a| a.iter().filter_map(element).collect()).unwrap_or_default())
    }

    /// The rendered text of an element (as a person reads it: markup gone, entities decoded).
    ///
    /// # Errors
    /// The command failed.
    pub async fn text(&self, el: &Element) -> Result<String, WebDriverError> {
        let v = self.call(reqwest::Method::GET, &format!("/element/{}/text", el.0), None, "get text").await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Clicks an element, as a person would.
    ///
    /// # Errors
    /// The command failed.
    pub async fn click(&self, el: &Element) -> Result<(), WebDriverError> {
        self.call(reqwest::Method::POST, &format!("/element/{}/click", el.0), None, "click").await?;
        Ok(())
    }

    /// Accepts the open `confirm` or `alert` dialog.
    ///
    /// # Errors
    /// No dialog is open.
    pub async fn accept_alert(&self) -> Result<(), WebDriverError> {
        self.call(reqwest::Method::POST, "/alert/accept", None, "accept alert").await?;
        Ok(())
    }

    /// Runs a script in the page and returns its value.
    ///
    /// # Errors
    /// The script threw, or the command failed.
    pub async fn execute(&self, script: &str) -> Result<Value, WebDriverError> {
        let body = json!({ "script": script, "args": [] });
        self.call(reqwest::Method::POST, "/execute/sync", Some(body), "execute script").await
    }

    /// A PNG screenshot of the viewport.
    ///
    /// # Errors
    /// The command failed, or its answer is not base64.
    pub async fn screenshot(&self) -> Result<Vec<u8>, WebDriverError> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None, "screenshot").await?;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| WebDriverError::Command { what: "screenshot".into(), answer: e.to_string() })
    }

    /// Ends the session (Chromium exits); dropping `self` then stops the driver's process
    /// group, Chromium included if it did not exit.
    pub async fn quit(self) {
        let _ = self.call(reqwest::Method::DELETE, "", None, "delete session").await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(None) = self.driver.try_wait() {
            // The driver's process group: the driver and the Chromium it started.
            let group = format!("-{}", self.driver.id());
            let killed = Command::new("kill").args(["-s", "KILL", "--", &group]).stderr(Stdio::null()).status();
            if !killed.is_ok_and(|s| s.success()) {
                let _ = self.driver.kill();
            }
            let _ = self.driver.wait();
        }
    }
}

fn element(v: &Value) -> Option<Element> {
    v.get(ELEMENT).and_then(Value::as_str).map(|id| Element(id.to_owned()))
}
