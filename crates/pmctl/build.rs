//! Embeds the source revision the binary is built from as `PM_GIT_REVISION`: the
//! abbreviated commit, with `-dirty` when the work tree had uncommitted changes, or
//! `unknown` outside a git checkout (a source tarball). `pmctl --version`, `pm_build_info`
//! and every benchmark report show it, so a number can be traced to the code that made it.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let revision = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        None => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=PM_GIT_REVISION={revision}");
    // Asked again when a commit moves HEAD or the branch it names, when the index changes,
    // and when any source changes (an edit makes the tree dirty; it rebuilds pmctl anyway).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    if let (Some(common), Some(branch)) = (
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        println!("cargo:rerun-if-changed={common}/{branch}");
    }
    for source in [
        "../../crates",
        "../../migrations",
        "../../Cargo.toml",
        "../../Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={source}");
    }
}
