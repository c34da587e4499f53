//! A small Helm-compatible renderer for the chart's tests, since helm
//! cannot be installed where these tests run.
//!
//! Go templates are rendered by `gtmpl`; on top of its built-ins
//! (`if`/`with`/`range`/`define`/`template`, `and`, `or`, `not`, `eq`, `ne`,
//! `printf`, `index`, `len`) it provides the Helm and sprig functions the
//! chart uses: `include`, `toYaml`, `fromYaml`, `indent`, `nindent`,
//! `quote`, `default`, `trunc`, `trimSuffix`, `lower`, `replace`, `base`.
//! gtmpl cannot call methods with arguments, so `.Files.Get X` and
//! `.Files.Glob X` (also through `$`) are rewritten to the functions
//! `filesGet X` and `filesGlob X` before parsing. Templates must stay
//! within this subset; anything else fails the tests loudly.

use gtmpl::{Context, Func, FuncError, Template, Value};
use serde_json::Value as Json;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

thread_local! {
    /// `define`d templates, for `include`.
    static HELPERS: RefCell<String> = const { RefCell::new(String::new()) };
    /// Chart files outside `templates/`, for `.Files`.
    static FILES: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
}

/// A chart read from disk.
pub struct Chart {
    /// `Chart.yaml`.
    pub meta: Json,
    /// `values.yaml`.
    pub values: Json,
    /// `values.schema.json`.
    pub schema: Json,
    /// Templates by path under `templates/` (helpers excluded).
    pub templates: BTreeMap<String, String>,
    /// `_helpers.tpl`.
    pub helpers: String,
    /// Other chart files (for `.Files`) by chart-relative path.
    pub files: BTreeMap<String, String>,
}

/// The chart directory of the repository.
pub fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/rulake")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parses YAML into JSON.
pub fn yaml(text: &str) -> Json {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("YAML: {e}\n{text}"))
}

impl Chart {
    /// Reads the chart at `dir`.
    pub fn load(dir: &Path) -> Chart {
        let mut paths = Vec::new();
        walk(dir, &mut paths);
        let mut templates = BTreeMap::new();
        let mut files = BTreeMap::new();
        for path in paths {
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if let Some(t) = rel.strip_prefix("templates/") {
                if t != "_helpers.tpl" {
                    templates.insert(t.to_string(), read(&path));
                }
            } else if !rel.starts_with("crds/") && !rel.starts_with("ci/") {
                files.insert(rel, read(&path));
            }
        }
        Chart {
            meta: yaml(&read(&dir.join("Chart.yaml"))),
            values: yaml(&read(&dir.join("values.yaml"))),
            schema: serde_json::from_str(&read(&dir.join("values.schema.json")))
                .expect("values.schema.json"),
            helpers: read(&dir.join("templates/_helpers.tpl")),
            templates,
            files,
        }
    }

    /// The values with `overrides` merged in, as `helm -f` does.
    pub fn values_with(&self, overrides: &Json) -> Json {
        let mut values = self.values.clone();
        merge(&mut values, overrides);
        values
    }

    /// Renders every template with `values` (already merged) in release
    /// `rulake` of namespace `rulake-system`; returns path → output.
    pub fn render(&self, values: &Json) -> BTreeMap<String, String> {
        HELPERS.with(|h| *h.borrow_mut() = self.helpers.clone());
        FILES.with(|f| *f.borrow_mut() = self.files.clone());
        let context = serde_json::json!({
            "Values": values,
            "Release": { "Name": "rulake", "Namespace": "rulake-system", "Service": "Helm", "IsInstall": true },
            "Chart": {
                "Name": self.meta["name"], "Version": self.meta["version"], "AppVersion": self.meta["appVersion"],
            },
        });
        self.templates
            .iter()
            .map(|(path, text)| {
                let out = render_text(text, &to_value(&context))
                    .unwrap_or_else(|e| panic!("rendering {path}: {e}"));
                (path.clone(), out)
            })
            .collect()
    }
}

/// Merges `over` into `base`, as `helm -f` layers values files.
pub fn merge(base: &mut Json, over: &Json) {
    match (base, over) {
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Json::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn rewrite_files(text: &str) -> String {
    text.replace("$.Files.Get ", "filesGet ")
        .replace("$.Files.Glob ", "filesGlob ")
        .replace(".Files.Get ", "filesGet ")
        .replace(".Files.Glob ", "filesGlob ")
}

fn template() -> Result<Template, String> {
    let mut t = Template::default();
    t.add_funcs(&FUNCS);
    let helpers = HELPERS.with(|h| h.borrow().clone());
    t.add_template("_helpers.tpl", rewrite_files(&helpers))
        .map_err(|e| e.to_string())?;
    Ok(t)
}

fn render_text(text: &str, context: &Value) -> Result<String, String> {
    let mut t = template()?;
    t.parse(rewrite_files(text)).map_err(|e| e.to_string())?;
    t.render(&Context::from(context.clone()))
        .map_err(|e| e.to_string())
}

/// JSON → template value (objects become maps, so a missing key is empty).
pub fn to_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            _ => Value::from(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        Json::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn to_json(value: &Value) -> Json {
    match value {
        Value::NoValue | Value::Nil | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into()
            } else if let Some(i) = n.as_i64() {
                i.into()
            } else {
                n.as_f64().map(Json::from).unwrap_or(Json::Null)
            }
        }
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => {
            let sorted: BTreeMap<_, _> = o.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            Json::Object(sorted.into_iter().collect())
        }
    }
}

/// The string form Go's templates print for scalars.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::NoValue | Value::Nil => String::new(),
        other => match to_json(other) {
            Json::String(s) => s,
            j => j.to_string(),
        },
    }
}

fn err(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

fn arg<'a>(args: &'a [Value], i: usize, name: &str) -> Result<&'a Value, FuncError> {
    args.get(i)
        .ok_or_else(|| FuncError::AtLeastXArgs(name.into(), i + 1))
}

fn empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Map(m) | Value::Object(m) => m.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Function(_) => false,
    }
}

fn include(args: &[Value]) -> Result<Value, FuncError> {
    let name = text(arg(args, 0, "include")?);
    let context = args.get(1).cloned().unwrap_or(Value::Nil);
    let call = format!("{{{{- template {:?} . -}}}}", name);
    render_text(&call, &context).map(Value::String).map_err(err)
}

fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    let json = to_json(arg(args, 0, "toYaml")?);
    let out = serde_yaml::to_string(&json).map_err(|e| err(e.to_string()))?;
    Ok(Value::String(out.trim_end_matches('\n').to_string()))
}

fn from_yaml(args: &[Value]) -> Result<Value, FuncError> {
    let json: Json =
        serde_yaml::from_str(&text(arg(args, 0, "fromYaml")?)).map_err(|e| err(e.to_string()))?;
    Ok(to_value(&json))
}

fn indent_by(args: &[Value], name: &str) -> Result<String, FuncError> {
    let n = to_json(arg(args, 0, name)?)
        .as_u64()
        .ok_or_else(|| err(format!("{name}: width")))?;
    let pad = " ".repeat(n as usize);
    Ok(format!(
        "{pad}{}",
        text(arg(args, 1, name)?).replace('\n', &format!("\n{pad}"))
    ))
}

fn indent(args: &[Value]) -> Result<Value, FuncError> {
    indent_by(args, "indent").map(Value::String)
}

fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    indent_by(args, "nindent").map(|s| Value::String(format!("\n{s}")))
}

fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let quoted: Vec<String> = args
        .iter()
        .filter(|a| !matches!(a, Value::NoValue | Value::Nil))
        .map(|a| Json::String(text(a)).to_string())
        .collect();
    Ok(Value::String(quoted.join(" ")))
}

fn default(args: &[Value]) -> Result<Value, FuncError> {
    let fallback = arg(args, 0, "default")?;
    match args.get(1) {
        Some(given) if !empty(given) => Ok(given.clone()),
        _ => Ok(fallback.clone()),
    }
}

fn trunc(args: &[Value]) -> Result<Value, FuncError> {
    let n = to_json(arg(args, 0, "trunc")?)
        .as_u64()
        .ok_or_else(|| err("trunc: length"))? as usize;
    Ok(Value::String(
        text(arg(args, 1, "trunc")?).chars().take(n).collect(),
    ))
}

fn trim_suffix(args: &[Value]) -> Result<Value, FuncError> {
    let suffix = text(arg(args, 0, "trimSuffix")?);
    let s = text(arg(args, 1, "trimSuffix")?);
    Ok(Value::String(
        s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_string(),
    ))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(text(arg(args, 0, "lower")?).to_lowercase()))
}

fn replace(args: &[Value]) -> Result<Value, FuncError> {
    let old = text(arg(args, 0, "replace")?);
    let new = text(arg(args, 1, "replace")?);
    Ok(Value::String(
        text(arg(args, 2, "replace")?).replace(&old, &new),
    ))
}

fn base(args: &[Value]) -> Result<Value, FuncError> {
    let path = text(arg(args, 0, "base")?);
    Ok(Value::String(
        path.rsplit('/').next().unwrap_or_default().to_string(),
    ))
}

fn files_get(args: &[Value]) -> Result<Value, FuncError> {
    let path = text(arg(args, 0, "Files.Get")?);
    Ok(Value::String(FILES.with(|f| {
        f.borrow().get(&path).cloned().unwrap_or_default()
    })))
}

/// `*` matches within one path segment, as Helm's glob does.
fn glob_match(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((head, tail)) => {
            let Some(rest) = path.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| !rest[..i].contains('/') && glob_match(tail, &rest[i..]))
        }
    }
}

fn files_glob(args: &[Value]) -> Result<Value, FuncError> {
    let pattern = text(arg(args, 0, "Files.Glob")?);
    let matched = FILES.with(|f| {
        f.borrow()
            .iter()
            .filter(|(path, _)| glob_match(&pattern, path))
            .map(|(path, content)| (path.clone(), Value::String(content.clone())))
            .collect::<HashMap<_, _>>()
    });
    Ok(Value::Map(matched))
}

static FUNCS: [(&str, Func); 14] = [
    ("include", include as Func),
    ("toYaml", to_yaml as Func),
    ("fromYaml", from_yaml as Func),
    ("indent", indent as Func),
    ("nindent", nindent as Func),
    ("quote", quote as Func),
    ("default", default as Func),
    ("trunc", trunc as Func),
    ("trimSuffix", trim_suffix as Func),
    ("lower", lower as Func),
    ("replace", replace as Func),
    ("base", base as Func),
    ("filesGet", files_get as Func),
    ("filesGlob", files_glob as Func),
];

/// Splits rendered output into YAML documents, dropping empty ones.
pub fn documents(rendered: &str) -> Vec<Json> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in rendered.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            let doc = yaml(&current);
            if !doc.is_null() {
                docs.push(doc);
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}
