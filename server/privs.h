/* privs.h: capabilities: what lab runs will get, dropping the server's own, raising a run's. */
#ifndef SOCKLAB_PRIVS_H
#define SOCKLAB_PRIVS_H

#include <stddef.h>
#include <stdint.h>

/*
 * socklab's privilege model (README.md, "Containers"): the server needs no
 * capability at all; lab runs may need CAP_SYS_ADMIN (a private network
 * namespace), CAP_NET_ADMIN (bringing interfaces up, the lab network) and
 * CAP_NET_RAW (packet capture). In a container the server runs as a non-root
 * user and starts runs from a second copy of the binary (--lab-exe) carrying
 * those capabilities as *permitted* file capabilities (setcap ...+p, no
 * effective bit): the kernel grants the ones in the container's bounding set
 * and the run raises them (privs_raise), so a container without one of them
 * still runs every lab that can work without it. Capability sets are bit
 * masks indexed by capability number (CAP_NET_RAW = 13 is 1 << 13).
 */

#define PRIVS_CAP(n) (UINT64_C(1) << (n))

/* The capabilities a lab can use: CAP_NET_ADMIN | CAP_NET_RAW | CAP_SYS_ADMIN. */
extern const uint64_t privs_lab_caps;

/* Parse the value of a file's security.capability attribute (struct
 * vfs_cap_data, revision 1, 2 or 3, little-endian). Writes the permitted set
 * and whether the effective bit is set. 0, or -EINVAL for a malformed value. */
int privs_parse_fcaps(const unsigned char *buf, size_t len, uint64_t *permitted,
		      int *effective);

/* What exec of a binary with file capabilities fcaps (effective bit
 * feffective) gives a process, by the kernel's rules (capabilities(7)):
 * when the effective bit is set but some of fcaps are outside bset the exec
 * fails with EPERM (for root too); otherwise root (uid 0, without
 * SECBIT_NOROOT) receives the whole bounding set bset, under no_new_privs
 * file capabilities are ignored, and anyone else receives fcaps & bset.
 * Returns 0 and the set in *gained, or -EPERM. */
int privs_predict(uint64_t fcaps, int feffective, uint64_t bset, int nnp, int root,
		  uint64_t *gained);

/* "CAP_NET_RAW" for 13, or NULL for a number this table does not know. */
const char *privs_cap_name(unsigned cap);

/* Names of the capabilities in set, ", "-separated ("CAP_NET_RAW, ..."),
 * or "none". */
void privs_names(uint64_t set, char *out, size_t outlen);

/* This process's bounding, effective and ambient sets. */
uint64_t privs_bounding(void);
uint64_t privs_effective(void);

/*
 * Describe, in one line for the server's log, what lab runs started from
 * exe will be able to do in this process's situation (uid, bounding set,
 * no_new_privs). Returns 0, or -EPERM when exec of exe will fail for want of
 * capabilities (the server then falls back to its own binary).
 */
int privs_describe_exe(const char *exe, char *out, size_t outlen);

/* Give up every capability this process holds (effective, permitted,
 * inheritable, ambient) but leave the bounding set, which file capabilities
 * of the lab program draw from. Podman hands --cap-add capabilities to a
 * non-root USER as ambient ones; the server needs none. 0 or -errno. */
int privs_drop(char *err, size_t errlen);

/* Make every permitted capability effective (a `socklab run` started from a
 * binary with permitted-only file capabilities). 0 or -errno. */
int privs_raise(void);

#endif
