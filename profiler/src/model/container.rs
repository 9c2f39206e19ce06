//! Which container a cgroup v2 path belongs to, by the conventions of the runtimes that
//! create them (systemd and cgroupfs drivers alike), and the label a container is shown
//! under. Naming it (its runtime's state on disk) is `session::containers`' part.

/// The runtime a container's cgroup says made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    /// A Kubernetes container whose runtime the path does not tell (the cgroupfs driver:
    /// `/kubepods/burstable/pod<uid>/<id>`): containerd or CRI-O.
    Kubernetes,
    Containerd,
    CriO,
    Podman,
    /// LXC / Incus: the path holds the name.
    Lxc,
    /// systemd-nspawn or a VM registered with systemd-machined: the path holds the name.
    Machine,
}

/// A container a cgroup path belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    pub runtime: Runtime,
    /// The runtime's container id (64 hex digits), or the name for [`Runtime::Lxc`] and
    /// [`Runtime::Machine`].
    pub id: String,
    /// The Kubernetes pod's uid, when the path is under a pod's cgroup.
    pub pod_uid: Option<String>,
}

/// The container of a cgroup path (the innermost one the path names), if any.
pub fn container_of(path: &str) -> Option<ContainerRef> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let pod_uid = segments.iter().find_map(|segment| pod_uid_of(segment));
    let in_kubepods = segments.iter().any(|segment| segment.starts_with("kubepods"));
    for (index, segment) in segments.iter().enumerate().rev() {
        let parent = index.checked_sub(1).map(|i| segments[i]);
        if let Some((runtime, id)) = container_segment(segment, parent, in_kubepods) {
            return Some(ContainerRef {
                runtime,
                id,
                pod_uid: pod_uid.clone(),
            });
        }
    }
    None
}

/// systemd-driver scopes: `<prefix><64 hex>.scope`. The `conmon` scopes of CRI-O and podman
/// hold the runtime's monitor, not the container.
const SCOPES: [(&str, Runtime); 4] = [
    ("docker-", Runtime::Docker),
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("libpod-", Runtime::Podman),
];

fn container_segment(segment: &str, parent: Option<&str>, in_kubepods: bool) -> Option<(Runtime, String)> {
    if let Some(scope) = segment.strip_suffix(".scope") {
        for (prefix, runtime) in SCOPES {
            if let Some(id) = scope.strip_prefix(prefix).filter(|id| is_container_id(id)) {
                return Some((runtime, id.to_owned()));
            }
        }
        if let Some(name) = scope.strip_prefix("machine-") {
            return Some((Runtime::Machine, unescape_systemd(name)));
        }
        return None;
    }
    if let Some(name) = segment.strip_prefix("lxc.payload.") {
        return Some((Runtime::Lxc, name.to_owned()));
    }
    if is_container_id(segment) {
        // The cgroupfs driver: the id alone, under the runtime's own directory.
        let runtime = match parent {
            Some("docker") => Runtime::Docker,
            Some("libpod_parent") => Runtime::Podman,
            _ if in_kubepods => Runtime::Kubernetes,
            _ => return None,
        };
        return Some((runtime, segment.to_owned()));
    }
    None
}

/// A pod's uid from its cgroup: `kubepods-burstable-pod<uid with _>.slice` (systemd driver)
/// or `pod<uid>` (cgroupfs).
fn pod_uid_of(segment: &str) -> Option<String> {
    let uid = match segment.strip_suffix(".slice") {
        Some(slice) if slice.starts_with("kubepods") => slice.rsplit_once("-pod")?.1.replace('_', "-"),
        Some(_) => return None,
        None => segment.strip_prefix("pod")?.to_owned(),
    };
    (uid.len() == 36 && uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(uid)
}

fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// systemd's unit-name escaping: `\x2d` for `-` and so on.
fn unescape_systemd(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find("\\x") {
        out.push_str(&rest[..at]);
        match rest
            .get(at + 2..at + 4)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push_str("\\x");
                rest = &rest[at + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// What a container's runtime state tells about it (every field optional: best effort).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerNames {
    pub container: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
}

/// The label a container's processes are grouped under: `docker:web`,
/// `k8s:default/nginx-7c9f/nginx`, `podman:db`, `lxc:build`; the runtime and the id's first
/// 12 digits where the name could not be read (`docker:3f2a1b9c0d1e`,
/// `k8s:pod 5e1b...:3f2a1b9c0d1e`).
pub fn container_label(container: &ContainerRef, names: &ContainerNames) -> String {
    let short_id = &container.id[..container.id.len().min(12)];
    let name = names.container.as_deref().unwrap_or(short_id);
    let kubernetes = container.pod_uid.is_some() || names.pod.is_some() || container.runtime == Runtime::Kubernetes;
    if kubernetes {
        let pod = match (&names.namespace, &names.pod, &container.pod_uid) {
            (Some(namespace), Some(pod), _) => format!("{namespace}/{pod}"),
            (None, Some(pod), _) => pod.clone(),
            (_, None, Some(uid)) => format!("pod {uid}"),
            (_, None, None) => "pod ?".to_owned(),
        };
        return format!("k8s:{pod}/{name}");
    }
    let runtime = match container.runtime {
        Runtime::Docker => "docker",
        Runtime::Kubernetes | Runtime::Containerd => "containerd",
        Runtime::CriO => "crio",
        Runtime::Podman => "podman",
        Runtime::Lxc => "lxc",
        Runtime::Machine => "machine",
    };
    format!("{runtime}:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a1b9c0d1e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a";
    const UID: &str = "5e1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d";

    fn of(path: &str) -> Option<(Runtime, String, Option<String>)> {
        container_of(path).map(|c| (c.runtime, c.id, c.pod_uid))
    }

    #[test]
    fn runtimes_are_told_from_their_cgroup_paths() {
        let uid_underscored = UID.replace('-', "_");
        type Expected<'a> = Option<(Runtime, &'a str, Option<&'a str>)>;
        let cases: Vec<(String, Expected)> = vec![
            (format!("/system.slice/docker-{ID}.scope"), Some((Runtime::Docker, ID, None))),
            (format!("/docker/{ID}"), Some((Runtime::Docker, ID, None))),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_underscored}.slice/cri-containerd-{ID}.scope"
                ),
                Some((Runtime::Containerd, ID, Some(UID))),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{uid_underscored}.slice/crio-{ID}.scope"),
                Some((Runtime::CriO, ID, Some(UID))),
            ),
            (
                format!("/kubepods/besteffort/pod{UID}/{ID}"),
                Some((Runtime::Kubernetes, ID, Some(UID))),
            ),
            (
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"),
                Some((Runtime::Podman, ID, None)),
            ),
            (format!("/machine.slice/libpod-conmon-{ID}.scope"), None),
            (format!("/kubepods.slice/kubepods-pod{uid_underscored}.slice/crio-conmon-{ID}.scope"), None),
            ("/lxc.payload.build-box/init.scope".to_owned(), Some((Runtime::Lxc, "build-box", None))),
            (
                "/machine.slice/machine-debian\\x2dtest.scope".to_owned(),
                Some((Runtime::Machine, "debian-test", None)),
            ),
            ("/system.slice/ssh.service".to_owned(), None),
            ("/".to_owned(), None),
            // An id-like directory that no runtime made.
            (format!("/mine/{ID}"), None),
        ];
        for (path, expected) in cases {
            let expected = expected.map(|(runtime, id, uid)| (runtime, id.to_owned(), uid.map(str::to_owned)));
            assert_eq!(of(&path), expected, "{path}");
        }
    }

    #[test]
    fn labels_name_what_could_be_read_and_fall_back_on_the_id() {
        let docker = container_of(&format!("/system.slice/docker-{ID}.scope")).unwrap();
        let named = ContainerNames {
            container: Some("web".into()),
            ..Default::default()
        };
        assert_eq!(container_label(&docker, &named), "docker:web");
        assert_eq!(
            container_label(&docker, &ContainerNames::default()),
            "docker:3f2a1b9c0d1e"
        );
        let pod = container_of(&format!("/kubepods/besteffort/pod{UID}/{ID}")).unwrap();
        let names = ContainerNames {
            container: Some("nginx".into()),
            pod: Some("nginx-7c9f".into()),
            namespace: Some("default".into()),
        };
        assert_eq!(container_label(&pod, &names), "k8s:default/nginx-7c9f/nginx");
        assert_eq!(
            container_label(&pod, &ContainerNames::default()),
            format!("k8s:pod {UID}/3f2a1b9c0d1e")
        );
    }
}
