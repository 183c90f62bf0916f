//! `batchless local up|down|status`: a thin wrapper around the Python launcher.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::ValueEnum;

use crate::context::{self, Context};

pub const DEFAULT_NAME: &str = "dev";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LocalVerb {
    /// Start the stack and provision it from infra/template.yaml.
    Up,
    /// Stop the stack.
    Down,
    /// Show whether the stack is running.
    Status,
}

impl LocalVerb {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalVerb::Up => "up",
            LocalVerb::Down => "down",
            LocalVerb::Status => "status",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// up | down | status
    pub verb: LocalVerb,
    /// Stack name [default: --stack, else dev; `status` without one shows every stack].
    #[arg(long)]
    pub name: Option<String>,
    /// Replica time scale (e.g. 0.1 makes Wait states and builds ten times faster).
    #[arg(long, value_name = "X")]
    pub time_scale: Option<f64>,
    /// `up`: run your own Rails app (a git repository) instead of local/sample-app.
    #[arg(long, value_name = "DIR")]
    pub app: Option<PathBuf>,
    /// Further arguments passed to the launcher as they are.
    #[arg(last = true)]
    pub extra: Vec<String>,
}

/// The interpreter: the repository's venv, else `python3` from PATH.
pub fn python(root: &Path) -> (PathBuf, bool) {
    let venv = root.join(".venv").join("bin").join("python");
    if venv.is_file() {
        (venv, true)
    } else {
        (PathBuf::from("python3"), false)
    }
}

/// The launcher's arguments: `local/replica.py <verb> [--name NAME] [--env ENV]
/// [--time-scale X] [extra...]`. `status` without a name reports every stack; `up` and
/// `down` default to the stack `dev`.
pub fn launcher_args(
    root: &Path,
    args: &Args,
    name: Option<&str>,
    env: Option<&str>,
) -> Vec<String> {
    let mut out = vec![
        root.join("local").join("replica.py").display().to_string(),
        args.verb.as_str().to_string(),
    ];
    let name = match args.verb {
        LocalVerb::Status => name,
        LocalVerb::Up | LocalVerb::Down => Some(name.unwrap_or(DEFAULT_NAME)),
    };
    if let Some(n) = name {
        out.extend(["--name".to_string(), n.to_string()]);
    }
    if let (LocalVerb::Up, Some(e)) = (args.verb, env) {
        out.extend(["--env".to_string(), e.to_string()]);
    }
    if let Some(x) = args.time_scale {
        out.extend(["--time-scale".to_string(), x.to_string()]);
    }
    if let (LocalVerb::Up, Some(dir)) = (args.verb, &args.app) {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        out.extend(["--app".to_string(), dir.display().to_string()]);
    }
    out.extend(args.extra.iter().cloned());
    out
}

/// Runs the launcher; its exit code is the command's. Needs no AWS connection.
pub async fn run(cx: &Context, args: Args) -> Result<ExitCode> {
    let root = context::repo_root()?;
    let name = args.name.as_deref().or(cx.stack_name());
    let env = cx.environment_option();
    let (python, in_venv) = python(&root);
    if !in_venv {
        eprintln!(
            "warning: no {}; using python3 from PATH (run `make setup` for the pinned environment)",
            root.join(".venv/bin/python").display()
        );
    }
    let mut child = tokio::process::Command::new(&python)
        .args(launcher_args(&root, &args, name, env))
        .current_dir(&root)
        .spawn()
        .with_context(|| format!("starting {}", python.display()))?;
    // Ctrl-C reaches the launcher too (same process group): let it shut down and report.
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the launcher")?,
            _ = tokio::signal::ctrl_c() => continue,
        }
    };
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::from(130), // killed by a signal
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(verb: LocalVerb, time_scale: Option<f64>, extra: &[&str]) -> Args {
        Args {
            verb,
            name: None,
            time_scale,
            app: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn launcher_arguments() {
        let root = Path::new("/repo");
        assert_eq!(
            launcher_args(
                root,
                &local(LocalVerb::Up, Some(0.25), &["--timeout", "60"]),
                Some("ci"),
                Some("production")
            ),
            vec![
                "/repo/local/replica.py",
                "up",
                "--name",
                "ci",
                "--env",
                "production",
                "--time-scale",
                "0.25",
                "--timeout",
                "60"
            ]
        );
        assert_eq!(
            launcher_args(root, &local(LocalVerb::Up, None, &[]), None, None),
            vec!["/repo/local/replica.py", "up", "--name", "dev"]
        );
        assert_eq!(
            launcher_args(
                root,
                &local(LocalVerb::Down, None, &[]),
                None,
                Some("staging")
            ),
            vec!["/repo/local/replica.py", "down", "--name", "dev"]
        );
        // status without a name: every stack.
        assert_eq!(
            launcher_args(root, &local(LocalVerb::Status, None, &[]), None, None),
            vec!["/repo/local/replica.py", "status"]
        );
        assert_eq!(
            launcher_args(root, &local(LocalVerb::Status, None, &[]), Some("ci"), None),
            vec!["/repo/local/replica.py", "status", "--name", "ci"]
        );
    }

    #[test]
    fn verbs_parse() {
        let l: Args = crate::testing::parse_args(&[
            "up",
            "--name",
            "ci",
            "--time-scale",
            "0.1",
            "--",
            "--verbose",
        ])
        .unwrap();
        assert_eq!(l.verb, LocalVerb::Up);
        assert_eq!(l.name.as_deref(), Some("ci"));
        assert_eq!(l.time_scale, Some(0.1));
        assert_eq!(l.extra, vec!["--verbose"]);
        assert!(crate::testing::parse_args::<Args>(&["restart"]).is_err());
    }

    #[test]
    fn the_venv_interpreter_is_preferred() {
        let root = std::env::temp_dir().join(format!("batchless-venv-{}", std::process::id()));
        assert_eq!(python(&root), (PathBuf::from("python3"), false));
        std::fs::create_dir_all(root.join(".venv/bin")).unwrap();
        std::fs::write(root.join(".venv/bin/python"), "").unwrap();
        assert_eq!(python(&root), (root.join(".venv/bin/python"), true));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn up_passes_the_app_directory_as_an_absolute_path() {
        let mut a = local(LocalVerb::Up, None, &[]);
        a.app = Some(PathBuf::from("/srv/my-app"));
        let out = launcher_args(Path::new("/r"), &a, None, None);
        assert!(
            out.ends_with(&["--app".to_string(), "/srv/my-app".to_string()]),
            "{out:?}"
        );
        a.verb = LocalVerb::Down;
        assert!(!launcher_args(Path::new("/r"), &a, None, None).contains(&"--app".to_string()));
    }
}
