//! Who may use the control socket.
//!
//! Only root may change the configuration, as with ipvsadm (which needs
//! CAP_NET_ADMIN). `xvsd --group G` also lets members of group G in: the
//! socket becomes mode 0660 owned by G, and each peer's SO_PEERCRED uid is
//! checked against G's members in /etc/group and the primary groups in
//! /etc/passwd (re-read for each non-root peer, so membership changes
//! apply without a restart). Root's requests never read those files.

use std::path::Path;

/// A group allowed besides root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Numeric id.
    pub gid: u32,
    /// Name, if /etc/group has one.
    pub name: Option<String>,
}

/// One `/etc/group` entry: name, gid, members.
fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    text.lines().filter_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _pw = f.next()?;
        let gid = f.next()?.trim().parse().ok()?;
        let members = f
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        Some((name, gid, members))
    })
}

/// Resolve `--group`'s value, a number or a name in `group_file`'s text.
pub fn resolve_group(spec: &str, group_file: &str) -> Result<Group, String> {
    if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        let gid: u32 = spec.parse().map_err(|_| format!("bad group id {spec:?}"))?;
        let name = group_entries(group_file)
            .find(|(_, g, _)| *g == gid)
            .map(|(n, _, _)| n.to_string());
        return Ok(Group { gid, name });
    }
    group_entries(group_file)
        .find(|(n, _, _)| *n == spec)
        .map(|(n, gid, _)| Group {
            gid,
            name: Some(n.to_string()),
        })
        .ok_or_else(|| format!("no group named {spec:?}"))
}

/// Whether user `uid` belongs to `group`, by the texts of /etc/passwd and
/// /etc/group.
pub fn is_member(uid: u32, group: &Group, passwd_file: &str, group_file: &str) -> bool {
    let user = passwd_file.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let u: u32 = f.get(2)?.trim().parse().ok()?;
        let g: u32 = f.get(3)?.trim().parse().ok()?;
        (u == uid).then(|| (f[0].to_string(), g))
    });
    let Some((name, primary)) = user else {
        return false;
    };
    primary == group.gid
        || group_entries(group_file)
            .any(|(_, gid, members)| gid == group.gid && members.contains(&name.as_str()))
}

/// Whether a peer with `uid` may use the daemon.
pub fn allowed(uid: u32, group: Option<&Group>) -> bool {
    if uid == 0 {
        return true;
    }
    let Some(g) = group else {
        return false;
    };
    let read = |p: &str| std::fs::read_to_string(Path::new(p)).unwrap_or_default();
    is_member(uid, g, &read("/etc/passwd"), &read("/etc/group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "root:x:0:\nxvs:x:990:alice,bob\nstaff:x:50:\n";
    const PASSWD: &str = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n\
bob:x:1001:1001::/:/bin/sh\ncarol:x:1002:990::/:/bin/sh\ndave:x:1003:50::/:/bin/sh\n";

    #[test]
    fn groups_resolve_by_name_and_number() {
        let g = resolve_group("xvs", GROUP).unwrap();
        assert_eq!(g.gid, 990);
        assert_eq!(resolve_group("990", GROUP).unwrap(), g);
        assert_eq!(resolve_group("4242", GROUP).unwrap().name, None);
        assert!(resolve_group("nobody-here", GROUP).is_err());
        assert!(resolve_group("", GROUP).is_err());
    }

    #[test]
    fn membership() {
        let g = resolve_group("xvs", GROUP).unwrap();
        assert!(is_member(1000, &g, PASSWD, GROUP)); // listed member
        assert!(is_member(1002, &g, PASSWD, GROUP)); // primary group
        assert!(!is_member(1003, &g, PASSWD, GROUP));
        assert!(!is_member(4242, &g, PASSWD, GROUP)); // unknown user
        assert!(allowed(0, None));
        assert!(!allowed(1000, None));
    }
}
