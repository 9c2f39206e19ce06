//! Names of the containers processes run in, read from their runtimes' state on disk (no
//! runtime API, no socket): Docker's `config.v2.json`, the OCI `config.json` annotations
//! containerd's and CRI-O's Kubernetes containers carry (container, pod, namespace), the
//! container list of podman's storage. Under `--host-root` (an agent in a container with the
//! host's `/` mounted there). Best effort: a container whose state cannot be read keeps its
//! runtime and short id.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    model::container::{container_label, container_of, ContainerNames, ContainerRef, Runtime},
    session::cgroups::CgroupPaths,
};

/// A container whose names could not be read is tried again after this long (its runtime may
/// not have written them yet), not on every read.
const READ_AGAIN_AFTER: Duration = Duration::from_secs(10);

/// Container labels by cgroup path, read once per container.
pub struct Containers {
    host_root: PathBuf,
    names: HashMap<ContainerRef, (ContainerNames, Instant)>,
}

impl Containers {
    pub fn new(host_root: &Path) -> Containers {
        Containers {
            host_root: host_root.to_owned(),
            names: HashMap::new(),
        }
    }

    /// What a cgroup's processes are grouped under: their container's label
    /// ([`container_label`]), or the path itself outside containers.
    pub fn group_of(&mut self, cgroup_path: &str) -> String {
        let Some(container) = container_of(cgroup_path) else {
            return cgroup_path.to_owned();
        };
        let stale = match self.names.get(&container) {
            Some((names, _)) if names.container.is_some() => false,
            Some((_, read_at)) => read_at.elapsed() >= READ_AGAIN_AFTER,
            None => true,
        };
        if stale {
            let names = read_names(&self.host_root, &container);
            self.names.insert(container.clone(), (names, Instant::now()));
        }
        container_label(&container, &self.names[&container].0)
    }
}

/// What a process's calls are grouped under by cgroup: its cgroup v2 path, or with
/// `by_container` its container's label ([`Containers::group_of`]); `unknown` for a cgroup
/// not found (removed before it was looked up).
pub struct CgroupLabels {
    paths: CgroupPaths,
    containers: Containers,
}

impl CgroupLabels {
    pub fn new(host_root: &Path) -> CgroupLabels {
        CgroupLabels {
            paths: CgroupPaths::default(),
            containers: Containers::new(host_root),
        }
    }

    /// The label of the cgroup whose id is `cgroup_id`.
    pub fn label(&mut self, cgroup_id: u64, by_container: bool) -> String {
        match self.paths.path(cgroup_id) {
            Some(path) if by_container => self.containers.group_of(&path),
            Some(path) => path,
            None => "unknown".to_owned(),
        }
    }
}

/// Kubernetes annotations of an OCI `config.json`: containerd's CRI plugin's, CRI-O's.
const CONTAINERD_ANNOTATIONS: [&str; 3] = [
    "io.kubernetes.cri.container-name",
    "io.kubernetes.cri.sandbox-name",
    "io.kubernetes.cri.sandbox-namespace",
];
const CRIO_ANNOTATIONS: [&str; 3] = [
    "io.kubernetes.container.name",
    "io.kubernetes.pod.name",
    "io.kubernetes.pod.namespace",
];

/// What the runtime's state under `root` says about `container`.
fn read_names(root: &Path, container: &ContainerRef) -> ContainerNames {
    let id = &container.id;
    let json = |relative: String| -> Option<Value> {
        let text = std::fs::read_to_string(root.join(relative)).ok()?;
        serde_json::from_str(&text).ok()
    };
    let containerd = || {
        json(format!(
            "run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/config.json"
        ))
        .map(|config| annotated(&config, CONTAINERD_ANNOTATIONS))
    };
    let crio = || {
        json(format!(
            "run/containers/storage/overlay-containers/{id}/userdata/config.json"
        ))
        .map(|config| annotated(&config, CRIO_ANNOTATIONS))
    };
    let found = match container.runtime {
        Runtime::Docker => {
            json(format!("var/lib/docker/containers/{id}/config.v2.json")).map(|config| ContainerNames {
                container: config["Name"]
                    .as_str()
                    .map(|name| name.trim_start_matches('/').to_owned()),
                ..Default::default()
            })
        }
        Runtime::Containerd => containerd(),
        Runtime::CriO => crio(),
        Runtime::Kubernetes => containerd().or_else(crio),
        Runtime::Podman => {
            json("var/lib/containers/storage/overlay-containers/containers.json".to_owned()).and_then(|list| {
                let entry = list.as_array()?.iter().find(|entry| entry["id"] == id.as_str())?;
                Some(ContainerNames {
                    container: entry["names"][0].as_str().map(str::to_owned),
                    ..Default::default()
                })
            })
        }
        Runtime::Lxc | Runtime::Machine => Some(ContainerNames {
            container: Some(id.clone()),
            ..Default::default()
        }),
    };
    found.unwrap_or_default()
}

/// The container, pod and namespace annotations (`keys`, in that order) of an OCI config.
fn annotated(config: &Value, keys: [&str; 3]) -> ContainerNames {
    let annotation = |key: &str| config["annotations"][key].as_str().map(str::to_owned);
    ContainerNames {
        container: annotation(keys[0]),
        pod: annotation(keys[1]),
        namespace: annotation(keys[2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a1b9c0d1e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a";
    const UID: &str = "5e1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d";

    fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn names_come_from_each_runtimes_state_under_the_host_root() {
        let root = std::env::temp_dir().join(format!("containers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write(
            &root,
            &format!("var/lib/docker/containers/{ID}/config.v2.json"),
            r#"{"ID":"x","Name":"/web"}"#,
        );
        write(
            &root,
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}/config.json"),
            r#"{"annotations":{"io.kubernetes.cri.container-name":"nginx","io.kubernetes.cri.sandbox-name":"nginx-7c9f","io.kubernetes.cri.sandbox-namespace":"shop"}}"#,
        );
        write(
            &root,
            "var/lib/containers/storage/overlay-containers/containers.json",
            &format!(r#"[{{"id":"{ID}","names":["db"]}}]"#),
        );
        let mut containers = Containers::new(&root);
        let uid = UID.replace('-', "_");
        let cases = [
            (format!("/system.slice/docker-{ID}.scope"), "docker:web".to_owned()),
            (
                format!("/kubepods.slice/kubepods-pod{uid}.slice/cri-containerd-{ID}.scope"),
                "k8s:shop/nginx-7c9f/nginx".to_owned(),
            ),
            // cgroupfs driver: the runtime is found by where its state is.
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                "k8s:shop/nginx-7c9f/nginx".to_owned(),
            ),
            // CRI-O's state is not there: the pod's uid and the short id.
            (
                format!("/kubepods.slice/kubepods-pod{uid}.slice/crio-{ID}.scope"),
                format!("k8s:pod {UID}/3f2a1b9c0d1e"),
            ),
            (format!("/machine.slice/libpod-{ID}.scope"), "podman:db".to_owned()),
            (
                "/system.slice/cron.service".to_owned(),
                "/system.slice/cron.service".to_owned(),
            ),
        ];
        for (path, label) in cases {
            assert_eq!(containers.group_of(&path), label, "{path}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
