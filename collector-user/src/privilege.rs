//! Dropping root after setup (`collector run --user NAME`).
//!
//! Owns the switch from root to an unprivileged user once the XDP program is attached and the
//! sockets and buffers are open: supplementary groups, group and user ids, and the capability
//! sets, which keep only what reading the already-open BPF maps still needs (CAP_BPF: with
//! `kernel.unprivileged_bpf_disabled` set, every bpf(2) call needs it). It must run before any
//! other thread exists, so the ids change for the whole process.

use std::ffi::CString;

use anyhow::{Context as _, bail};

/// CAP_BPF (include/uapi/linux/capability.h).
pub const CAP_BPF: u32 = 39;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// A user looked up in the password database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// User id.
    pub uid: libc::uid_t,
    /// Primary group id.
    pub gid: libc::gid_t,
}

/// Look up `name` (getpwnam_r).
pub fn lookup(name: &str) -> anyhow::Result<Account> {
    let cname = CString::new(name).context("user name contains NUL")?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: zeroed passwd is a valid out-parameter for getpwnam_r.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the sizes given; `result` is set to `&entry` or null.
    let ret = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if ret != 0 {
        return Err(std::io::Error::from_raw_os_error(ret))
            .with_context(|| format!("looking up user {name}"));
    }
    if result.is_null() {
        bail!("no user named {name}");
    }
    Ok(Account {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
    })
}

/// Become `name` for good, keeping only the capabilities in `keep` (numbers, e.g. [`CAP_BPF`])
/// effective and permitted. Fails, changing nothing it can avoid, when not root or the user is
/// unknown; fails loudly if root could be regained afterwards.
pub fn drop_to_user(name: &str, keep: &[u32]) -> anyhow::Result<Account> {
    let account = lookup(name)?;
    if account.uid == 0 {
        bail!("--user {name} is root; give an unprivileged user");
    }
    let check = |ret: libc::c_int, what: &str| -> anyhow::Result<()> {
        if ret != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| what.to_owned());
        }
        Ok(())
    };
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
            "prctl(PR_SET_KEEPCAPS)",
        )?;
        check(libc::setgroups(1, &account.gid), "setgroups")?;
        check(
            libc::setresgid(account.gid, account.gid, account.gid),
            "setresgid",
        )?;
        check(
            libc::setresuid(account.uid, account.uid, account.uid),
            "setresuid",
        )?;
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0),
            "prctl(PR_SET_KEEPCAPS, 0)",
        )?;
    }
    let mut data = [CapData::default(); 2];
    for cap in keep {
        let half = &mut data[(*cap / 32) as usize % 2];
        half.effective |= 1 << (cap % 32);
        half.permitted |= 1 << (cap % 32);
    }
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset with a version-3 header and two data structs.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    check(ret as libc::c_int, "capset")?;
    // SAFETY: plain syscall; it must fail now.
    if unsafe { libc::setuid(0) } == 0 {
        bail!("root could be regained after dropping to {name}");
    }
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unknown_users_are_looked_up_or_refused() {
        assert_eq!(lookup("root").unwrap().uid, 0);
        let err = lookup("no-such-user-collector-test").unwrap_err();
        assert!(err.to_string().contains("no user named"), "{err}");
        assert!(lookup("bad\0name").is_err());
        let err = drop_to_user("root", &[]).unwrap_err();
        assert!(err.to_string().contains("is root"), "{err}");
    }
}
