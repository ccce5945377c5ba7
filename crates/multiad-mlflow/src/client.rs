//! The few calls of MLflow's REST API (`/api/2.0/mlflow/...` and the
//! artefact proxy `/api/2.0/mlflow-artifacts/...`) that logging a run needs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// MLflow's limits per `runs/log-batch` request.
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;
/// Longest parameter value MLflow 2.x/3.x stores.
pub const MAX_PARAM_VALUE: usize = 6000;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub step: i64,
    pub timestamp: i64,
}

pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the tracking server at `uri` (`http://host:port`, or https).
    pub fn new(uri: &str) -> Result<Client> {
        let base = uri.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("MLflow tracking URI {uri:?}: multiad logs to a tracking server (http:// or https://), not to {uri:?}");
        }
        let agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(10)).timeout(Duration::from_secs(120)).build();
        Ok(Client { base, agent })
    }

    pub fn uri(&self) -> &str {
        &self.base
    }

    fn answer(&self, what: &str, r: std::result::Result<ureq::Response, ureq::Error>) -> Result<Value> {
        match r {
            Ok(resp) => {
                let text = resp.into_string().with_context(|| format!("MLflow at {}: reading the answer to {what}", self.base))?;
                if text.trim().is_empty() {
                    return Ok(json!({}));
                }
                serde_json::from_str(&text).with_context(|| format!("MLflow at {}: {what} answered with something not JSON", self.base))
            }
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                bail!("MLflow at {}: {what} failed with HTTP {code}: {}", self.base, body.trim())
            }
            Err(e) => bail!("MLflow at {} is unreachable ({what}): {e}", self.base),
        }
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let r = self.agent.post(&url).set("Content-Type", "application/json").send_string(&body.to_string());
        self.answer(path, r)
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let mut req = self.agent.get(&format!("{}/api/2.0/mlflow/{path}", self.base));
        for (k, v) in query {
            req = req.query(k, v);
        }
        self.answer(path, req.call())
    }

    /// The id of experiment `name`, created if it does not exist.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        let url = format!("{}/api/2.0/mlflow/experiments/get-by-name", self.base);
        match self.agent.get(&url).query("experiment_name", name).call() {
            Ok(r) => {
                let v: Value = serde_json::from_str(&r.into_string()?)?;
                v["experiment"]["experiment_id"].as_str().map(String::from).context("get-by-name: no experiment_id")
            }
            Err(ureq::Error::Status(404, _)) => {
                let v = self.post("experiments/create", &json!({ "name": name }))?;
                v["experiment_id"].as_str().map(String::from).context("experiments/create: no experiment_id")
            }
            Err(e) => self.answer("experiments/get-by-name", Err(e)).map(|_| unreachable!()),
        }
    }

    /// A new run: `(run_id, artifact_uri)`.
    pub fn create_run(&self, experiment_id: &str, name: &str, tags: &[(&str, String)]) -> Result<(String, String)> {
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        let v = self.post("runs/create", &json!({ "experiment_id": experiment_id, "run_name": name, "start_time": now_ms(), "tags": tags }))?;
        let info = &v["run"]["info"];
        Ok((info["run_id"].as_str().context("runs/create: no run_id")?.to_string(), info["artifact_uri"].as_str().unwrap_or_default().to_string()))
    }

    /// Params and metrics, in as many `log-batch` requests as MLflow's limits need.
    pub fn log_batch(&self, run_id: &str, params: &[(String, String)], metrics: &[Metric]) -> Result<()> {
        for chunk in params.chunks(MAX_PARAMS) {
            let ps: Vec<Value> = chunk.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
            self.post("runs/log-batch", &json!({ "run_id": run_id, "params": ps }))?;
        }
        for chunk in metrics.chunks(MAX_METRICS) {
            let ms: Vec<Value> = chunk.iter().map(|m| json!({ "key": m.key, "value": m.value, "step": m.step, "timestamp": m.timestamp })).collect();
            self.post("runs/log-batch", &json!({ "run_id": run_id, "metrics": ms }))?;
        }
        Ok(())
    }

    pub fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<()> {
        self.post("runs/set-tag", &json!({ "run_id": run_id, "key": key, "value": value })).map(|_| ())
    }

    /// `FINISHED`, `FAILED`, `RUNNING`, `KILLED`.
    pub fn set_status(&self, run_id: &str, status: &str) -> Result<()> {
        self.post("runs/update", &json!({ "run_id": run_id, "status": status, "end_time": now_ms() })).map(|_| ())
    }

    pub fn get_run(&self, run_id: &str) -> Result<Value> {
        self.get("runs/get", &[("run_id", run_id)])
    }

    /// Uploads one artefact through the server's artefact proxy (`mlflow
    /// server` serves artefacts unless started with `--no-serve-artifacts`).
    pub fn upload(&self, artifact_uri: &str, rel_path: &str, bytes: &[u8]) -> Result<()> {
        let Some(root) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            bail!(
                "MLflow at {}: the run's artefacts live at {artifact_uri}, which only the server's artefact proxy lets multiad write; start `mlflow server` with artefact serving (the default)",
                self.base
            );
        };
        let root = root.trim_start_matches('/');
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{root}/{rel_path}", self.base);
        let r = self.agent.put(&url).set("Content-Type", "application/octet-stream").send_bytes(bytes);
        self.answer(&format!("uploading {rel_path}"), r).map(|_| ())
    }

    /// A metric's values by step.
    pub fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<(i64, f64)>> {
        let v = self.get("metrics/get-history", &[("run_id", run_id), ("metric_key", key)])?;
        Ok(v["metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| (m["step"].as_i64().unwrap_or(0), m["value"].as_f64().unwrap_or(f64::NAN)))
            .collect())
    }

    /// An artefact's bytes, through the artefact proxy.
    pub fn download(&self, artifact_uri: &str, rel_path: &str) -> Result<Vec<u8>> {
        let root = artifact_uri.strip_prefix("mlflow-artifacts:").context("not a proxied artefact URI")?.trim_start_matches('/');
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{root}/{rel_path}", self.base);
        let resp = self.agent.get(&url).call().map_err(|e| anyhow::anyhow!("MLflow at {}: downloading {rel_path}: {e}", self.base))?;
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut out)?;
        Ok(out)
    }

    /// The runs of an experiment: (run name, run id).
    pub fn runs(&self, experiment_id: &str) -> Result<Vec<(String, String)>> {
        let v = self.post("runs/search", &json!({ "experiment_ids": [experiment_id], "max_results": 1000 }))?;
        Ok(v["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| (r["info"]["run_name"].as_str().unwrap_or_default().to_string(), r["info"]["run_id"].as_str().unwrap_or_default().to_string()))
            .collect())
    }

    /// The artefact paths under `path` of a run (recursively).
    pub fn list_artifacts(&self, run_id: &str, path: &str) -> Result<Vec<String>> {
        let v = self.get("artifacts/list", &[("run_id", run_id), ("path", path)])?;
        let mut out = Vec::new();
        for f in v["files"].as_array().cloned().unwrap_or_default() {
            let p = f["path"].as_str().unwrap_or_default().to_string();
            if f["is_dir"].as_bool() == Some(true) {
                out.extend(self.list_artifacts(run_id, &p)?);
            } else {
                out.push(p);
            }
        }
        Ok(out)
    }
}
