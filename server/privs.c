/* privs.c: capabilities: what lab runs will get, dropping the server's own, raising a run's. */
#include "privs.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

const uint64_t privs_lab_caps =
	PRIVS_CAP(CAP_NET_ADMIN) | PRIVS_CAP(CAP_NET_RAW) | PRIVS_CAP(CAP_SYS_ADMIN);

/* Indexed by capability number (linux/capability.h). */
static const char *const cap_names[] = {
	[CAP_CHOWN] = "CAP_CHOWN",
	[CAP_DAC_OVERRIDE] = "CAP_DAC_OVERRIDE",
	[CAP_DAC_READ_SEARCH] = "CAP_DAC_READ_SEARCH",
	[CAP_FOWNER] = "CAP_FOWNER",
	[CAP_FSETID] = "CAP_FSETID",
	[CAP_KILL] = "CAP_KILL",
	[CAP_SETGID] = "CAP_SETGID",
	[CAP_SETUID] = "CAP_SETUID",
	[CAP_SETPCAP] = "CAP_SETPCAP",
	[CAP_LINUX_IMMUTABLE] = "CAP_LINUX_IMMUTABLE",
	[CAP_NET_BIND_SERVICE] = "CAP_NET_BIND_SERVICE",
	[CAP_NET_BROADCAST] = "CAP_NET_BROADCAST",
	[CAP_NET_ADMIN] = "CAP_NET_ADMIN",
	[CAP_NET_RAW] = "CAP_NET_RAW",
	[CAP_IPC_LOCK] = "CAP_IPC_LOCK",
	[CAP_IPC_OWNER] = "CAP_IPC_OWNER",
	[CAP_SYS_MODULE] = "CAP_SYS_MODULE",
	[CAP_SYS_RAWIO] = "CAP_SYS_RAWIO",
	[CAP_SYS_CHROOT] = "CAP_SYS_CHROOT",
	[CAP_SYS_PTRACE] = "CAP_SYS_PTRACE",
	[CAP_SYS_PACCT] = "CAP_SYS_PACCT",
	[CAP_SYS_ADMIN] = "CAP_SYS_ADMIN",
	[CAP_SYS_BOOT] = "CAP_SYS_BOOT",
	[CAP_SYS_NICE] = "CAP_SYS_NICE",
	[CAP_SYS_RESOURCE] = "CAP_SYS_RESOURCE",
	[CAP_SYS_TIME] = "CAP_SYS_TIME",
	[CAP_SYS_TTY_CONFIG] = "CAP_SYS_TTY_CONFIG",
	[CAP_MKNOD] = "CAP_MKNOD",
	[CAP_LEASE] = "CAP_LEASE",
	[CAP_AUDIT_WRITE] = "CAP_AUDIT_WRITE",
	[CAP_AUDIT_CONTROL] = "CAP_AUDIT_CONTROL",
	[CAP_SETFCAP] = "CAP_SETFCAP",
	[CAP_MAC_OVERRIDE] = "CAP_MAC_OVERRIDE",
	[CAP_MAC_ADMIN] = "CAP_MAC_ADMIN",
	[CAP_SYSLOG] = "CAP_SYSLOG",
	[CAP_WAKE_ALARM] = "CAP_WAKE_ALARM",
	[CAP_BLOCK_SUSPEND] = "CAP_BLOCK_SUSPEND",
	[CAP_AUDIT_READ] = "CAP_AUDIT_READ",
	[38] = "CAP_PERFMON",
	[39] = "CAP_BPF",
	[40] = "CAP_CHECKPOINT_RESTORE",
};

#define N_CAP_NAMES (sizeof cap_names / sizeof cap_names[0])

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int privs_parse_fcaps(const unsigned char *buf, size_t len, uint64_t *permitted,
		      int *effective)
{
	uint32_t magic;

	/* struct vfs_cap_data: le32 magic_etc (revision in the top byte, the
	 * effective flag in bit 0), then {le32 permitted, le32 inheritable}
	 * once (revision 1) or twice (revisions 2 and 3, low word first);
	 * revision 3 adds le32 rootid (the owning user namespace's root). */
	if (len < 4)
		return -EINVAL;
	magic = le32(buf);
	if (magic & ~(VFS_CAP_REVISION_MASK | VFS_CAP_FLAGS_EFFECTIVE))
		return -EINVAL;
	switch (magic & VFS_CAP_REVISION_MASK) {
	case VFS_CAP_REVISION_1:
		if (len != XATTR_CAPS_SZ_1)
			return -EINVAL;
		*permitted = le32(buf + 4);
		break;
	case VFS_CAP_REVISION_2:
		if (len != XATTR_CAPS_SZ_2)
			return -EINVAL;
		*permitted = le32(buf + 4) | (uint64_t)le32(buf + 12) << 32;
		break;
#ifdef VFS_CAP_REVISION_3
	case VFS_CAP_REVISION_3:
		if (len != XATTR_CAPS_SZ_3)
			return -EINVAL;
		*permitted = le32(buf + 4) | (uint64_t)le32(buf + 12) << 32;
		break;
#endif
	default:
		return -EINVAL;
	}
	*effective = (magic & VFS_CAP_FLAGS_EFFECTIVE) != 0;
	return 0;
}

int privs_predict(uint64_t fcaps, int feffective, uint64_t bset, int nnp, int root,
		  uint64_t *gained)
{
	if (feffective && (fcaps & ~bset)) {
		/* A capability-dumb binary would run without capabilities it
		 * relies on: the kernel refuses to start it, for root too. */
		*gained = 0;
		return -EPERM;
	}
	if (root) {
		*gained = bset;
		return 0;
	}
	if (nnp) {
		/* no_new_privs: exec may not add capabilities. */
		*gained = 0;
		return 0;
	}
	*gained = fcaps & bset;
	return 0;
}

const char *privs_cap_name(unsigned cap)
{
	return cap < N_CAP_NAMES ? cap_names[cap] : NULL;
}

void privs_names(uint64_t set, char *out, size_t outlen)
{
	size_t off = 0;
	unsigned i;

	if (outlen == 0)
		return;
	out[0] = '\0';
	for (i = 0; i < 64 && off < outlen; i++) {
		int n;
		if (!(set & PRIVS_CAP(i)))
			continue;
		if (i < N_CAP_NAMES && cap_names[i])
			n = snprintf(out + off, outlen - off, "%s%s", off ? ", " : "", cap_names[i]);
		else
			n = snprintf(out + off, outlen - off, "%scapability %u", off ? ", " : "", i);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	if (!set)
		snprintf(out, outlen, "none");
}

uint64_t privs_bounding(void)
{
	uint64_t set = 0;
	unsigned i;

	for (i = 0; i < 64; i++) {
		int r = prctl(PR_CAPBSET_READ, (unsigned long)i, 0, 0, 0);
		if (r < 0)
			break; /* past the last capability this kernel knows */
		if (r == 1)
			set |= PRIVS_CAP(i);
	}
	return set;
}

static int cap_get(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};

	memset(d, 0, 2 * sizeof d[0]);
	return syscall(SYS_capget, &h, d) < 0 ? -errno : 0;
}

static int cap_set(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};

	return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

uint64_t privs_effective(void)
{
	struct __user_cap_data_struct d[2];

	if (cap_get(d) < 0)
		return 0;
	return d[0].effective | (uint64_t)d[1].effective << 32;
}

int privs_describe_exe(const char *exe, char *out, size_t outlen)
{
	unsigned char buf[XATTR_CAPS_SZ];
	char names[400], missing[400];
	uint64_t fcaps = 0, bset = privs_bounding(), gained = 0;
	int feff = 0, nnp, root, rc;
	ssize_t n;

	n = getxattr(exe, "security.capability", buf, sizeof buf);
	if (n < 0 && errno != ENODATA && errno != ENOTSUP) {
		snprintf(out, outlen, "lab runs: %s: cannot read its file capabilities: %s", exe,
			 strerror(errno));
		return 0;
	}
	if (n > 0 && privs_parse_fcaps(buf, (size_t)n, &fcaps, &feff) < 0) {
		snprintf(out, outlen, "lab runs: %s: its file capabilities are malformed", exe);
		return 0;
	}
	nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1;
	/* Root gains the bounding set on exec unless SECBIT_NOROOT (bit 0). */
	root = (getuid() == 0 || geteuid() == 0) && !(prctl(PR_GET_SECUREBITS, 0, 0, 0, 0) & 1);
	rc = privs_predict(fcaps, feff, bset, nnp, root, &gained);
	if (rc < 0) {
		privs_names(fcaps & ~bset, missing, sizeof missing);
		snprintf(out, outlen,
			 "lab runs: %s cannot start here: its effective file capabilities include "
			 "%s, which this container does not grant (exec fails with EPERM); runs use "
			 "the server's own binary, without capabilities",
			 exe, missing);
		return rc;
	}
	privs_names(gained & privs_lab_caps, names, sizeof names);
	privs_names(privs_lab_caps & ~gained, missing, sizeof missing);
	if (!(privs_lab_caps & ~gained)) {
		snprintf(out, outlen, "lab runs: %s with %s", exe, names);
	} else if (nnp && fcaps) {
		snprintf(out, outlen,
			 "lab runs: %s with %s: no_new_privs is set (no-new-privileges, or "
			 "allowPrivilegeEscalation: false), which disables its file capabilities; "
			 "labs that need %s say so or fall back",
			 exe, names, missing);
	} else {
		snprintf(out, outlen,
			 "lab runs: %s with %s; not granted: %s (labs that need them say so or "
			 "fall back)",
			 exe, names, missing);
	}
	return 0;
}

int privs_drop(char *err, size_t errlen)
{
	struct __user_cap_data_struct d[2];
	int rc;

	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
		rc = -errno;
		snprintf(err, errlen, "clearing ambient capabilities: %s", strerror(-rc));
		return rc;
	}
	memset(d, 0, sizeof d);
	rc = cap_set(d);
	if (rc < 0)
		snprintf(err, errlen, "dropping capabilities: %s", strerror(-rc));
	return rc;
}

int privs_raise(void)
{
	struct __user_cap_data_struct d[2];
	int rc = cap_get(d);

	if (rc < 0)
		return rc;
	if (d[0].effective == d[0].permitted && d[1].effective == d[1].permitted)
		return 0;
	d[0].effective = d[0].permitted;
	d[1].effective = d[1].permitted;
	return cap_set(d);
}
