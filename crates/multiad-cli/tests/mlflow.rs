//! Logging to a real MLflow tracking server: `mlflow server` started here
//! on localhost (SQLite store and artefacts in a temporary directory), a
//! smoke train and test logged to it, then read back through the REST API.
//! Without the `mlflow` Python package the test prints `SKIPPED: ...`; with
//! `MULTIAD_REQUIRE_MLFLOW=1` (set by `.ci/run` once it has installed it) a
//! server that does not start fails it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use multiad_mlflow::Client;
use multiad_sweep::{run_sweep, Plan, SweepArgs, SweepKind, SweepTracking};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn multiad(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_multiad")).args(args).env_remove("MLFLOW_TRACKING_URI").output().unwrap()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    uri: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Result<Server, String> {
        let have = Command::new("python3").args(["-c", "import mlflow"]).output().map(|o| o.status.success()).unwrap_or(false);
        if !have {
            return Err("the mlflow Python package is not installed (pip install mlflow)".into());
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new("python3")
            .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.path().join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting mlflow server: {e}"))?;
        let uri = format!("http://127.0.0.1:{port}");
        let mut server = Server { child, uri, _dir: dir };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(120) {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && Client::new(&server.uri).unwrap().experiment_id("Default").is_ok() {
                return Ok(server);
            }
            if let Ok(Some(st)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server._dir.path().join("server.log")).unwrap_or_default();
                return Err(format!("mlflow server exited ({st}): {}", log.lines().rev().take(10).collect::<Vec<_>>().join(" | ")));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Err("mlflow server did not answer within 120 s".into())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn server_or_skip() -> Option<Server> {
    match Server::start() {
        Ok(s) => Some(s),
        Err(why) if std::env::var("MULTIAD_REQUIRE_MLFLOW").is_ok_and(|v| v == "1") => panic!("MLflow: {why}"),
        Err(why) => {
            println!("SKIPPED: no MLflow server ({why})");
            None
        }
    }
}

fn synth(dir: &Path) -> PathBuf {
    ok(multiad(&[
        "synth",
        "--out",
        s(dir),
        "--category",
        "tiles",
        "--seed",
        "1",
        "--size",
        "64",
        "--train",
        "12",
        "--test-good",
        "4",
        "--test-per-defect",
        "2",
    ]));
    dir.join("tiles")
}

#[test]
fn train_and_test_log_params_metrics_and_artefacts_to_a_real_mlflow_server() {
    let Some(server) = server_or_skip() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = synth(&t.path().join("data"));
    let run = t.path().join("run");
    let cfg = repo().join("experiments/smoke.yaml");
    let flags = ["--mlflow", &server.uri, "--mlflow-experiment", "multiad-test", "--mlflow-on-error", "fail"];
    ok(multiad(&[&["train", "--config", s(&cfg), "--data", s(&data), "--out", s(&run), "--epochs", "3"][..], &flags].concat()));
    ok(multiad(&[&["test", "--run", s(&run), "--save-images"][..], &flags].concat()));

    let link: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("mlflow.json")).unwrap()).unwrap();
    let (run_id, artifact_uri) = (link["run_id"].as_str().unwrap(), link["artifact_uri"].as_str().unwrap());
    let c = Client::new(&server.uri).unwrap();
    let r = c.get_run(run_id).unwrap();
    assert_eq!(r["run"]["info"]["status"], "FINISHED");
    assert_eq!(r["run"]["info"]["run_name"], "run");
    let params: Vec<(String, String)> = r["run"]["data"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["key"].as_str().unwrap().to_string(), p["value"].as_str().unwrap().to_string()))
        .collect();
    let param = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(param("method").as_deref(), Some("multiad"));
    assert_eq!(param("train.epochs").as_deref(), Some("3"));
    assert_eq!(param("student.se").as_deref(), Some("true"));
    assert!(params.iter().any(|(k, _)| k.starts_with("data.")), "the data set spec is logged too: {params:?}");

    // Per-epoch losses with their steps, equal to history.jsonl; the test metrics.
    let history: Vec<serde_json::Value> =
        std::fs::read_to_string(run.join("history.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let loss = c.metric_history(run_id, "epoch/loss_g").unwrap();
    assert_eq!(loss.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    for (p, h) in loss.iter().zip(&history) {
        assert!((p.1 - h["loss_g"].as_f64().unwrap()).abs() < 1e-12, "{p:?} {h}");
    }
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(c.metric_history(run_id, "test/image_auroc").unwrap(), vec![(3, m["image_auroc"].as_f64().unwrap())]);
    assert_eq!(c.metric_history(run_id, "test/aupro").unwrap(), vec![(3, m["aupro"].as_f64().unwrap())]);

    // Artefacts: the files themselves, byte for byte.
    let arts = c.list_artifacts(run_id, "").unwrap();
    for want in ["config.yaml", "metrics.json", "scores.csv", "curves/roc.png", "curves/pro.svg", "images/hole_000.png"] {
        assert!(arts.iter().any(|a| a == want), "{want} not in {arts:?}");
    }
    for rel in ["metrics.json", "images/hole_000.png"] {
        assert_eq!(c.download(artifact_uri, rel).unwrap(), std::fs::read(run.join(rel)).unwrap(), "{rel}");
    }

    // A sweep: every cell a run named by its label, the tables in a run of their own.
    let out = t.path().join("sweep");
    // The synthetic suite reads <root>/synthetic/tiles.
    let root = t.path().join("suite-root");
    std::fs::create_dir_all(root.join("synthetic")).unwrap();
    std::os::unix::fs::symlink(&data, root.join("synthetic/tiles")).unwrap();
    let args = SweepArgs {
        kind: SweepKind::Ablation,
        suite: "synthetic".into(),
        preset: "smoke".into(),
        data_root: root,
        datasets: Some(vec!["tiles".into()]),
        configs: Some(vec![1, 8]),
        jobs: 2,
        out: Some(out.clone()),
        epochs: Some(2),
        seed: Some(0),
        device: None,
        experiments: repo().join("experiments"),
        mlflow: Some(SweepTracking { uri: server.uri.clone(), experiment: "multiad-sweep-test".into(), on_error: "fail".into() }),
    };
    let plan = Plan::new(&args).unwrap();
    let o = run_sweep(&plan, Path::new(env!("CARGO_BIN_EXE_multiad"))).unwrap();
    assert!(o.failed.is_empty(), "{:?}", o.failed);
    let exp = c.experiment_id("multiad-sweep-test").unwrap();
    let mut names: Vec<String> = c.runs(&exp).unwrap().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, vec!["sweep tables", "tiles/study-1", "tiles/study-8"]);
    let tables: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("mlflow.json")).unwrap()).unwrap();
    let arts = c.list_artifacts(tables["run_id"].as_str().unwrap(), "").unwrap();
    assert!(arts.iter().any(|a| a == "tables/table4.csv") && arts.iter().any(|a| a == "charts/bars_image_auroc.png"), "{arts:?}");
}

#[test]
fn an_unreachable_server_warns_or_fails_as_asked_and_the_local_run_is_complete() {
    let t = tempfile::tempdir().unwrap();
    let data = synth(&t.path().join("data"));
    let cfg = repo().join("experiments/smoke.yaml");
    let dead = format!("http://127.0.0.1:{}", free_port()); // nothing listens there
    let run = t.path().join("warn");
    let err = ok(multiad(&["train", "--config", s(&cfg), "--data", s(&data), "--out", s(&run), "--epochs", "1", "--mlflow", &dead]));
    assert!(err.contains("warning: not logged to MLflow") && err.contains("unreachable") && err.contains("are complete"), "{err}");
    assert!(run.join("training.json").is_file());

    let o = multiad(&["test", "--run", s(&run), "--mlflow", &dead, "--mlflow-on-error", "fail"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("logging to MLflow failed") && err.contains("unreachable"), "{err}");
    assert!(run.join("metrics.json").is_file(), "the local test results are written before logging");
    assert!(!err.contains("panicked"), "{err}");

    let o = multiad(&["test", "--run", s(&run), "--mlflow", "file:///tmp/mlruns", "--mlflow-on-error", "fail"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("tracking server (http:// or https://)"), "{err}");
}
