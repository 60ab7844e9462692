/* sandbox.h: give a run its own network namespace, or say why it cannot have one. */
#ifndef SOCKLAB_SANDBOX_H
#define SOCKLAB_SANDBOX_H

#include <stddef.h>

/* Move the calling process (it must have no other threads yet) into a new,
 * anonymous network namespace and bring its loopback up. The namespace has
 * no name and no mount: the kernel removes it, with everything configured in
 * it, when the last process in it exits, so a crashed or killed run cannot
 * leak it. Returns 0, or -errno with a message in err naming what is
 * missing: EPERM when the process lacks CAP_SYS_ADMIN, or CAP_NET_ADMIN to
 * bring the loopback up (it is then back in its original namespace, and the
 * caller may fall back to the host); -ENOTRECOVERABLE when it could not get
 * back (the caller must not pretend to be on the host). */
int sandbox_netns_enter(char *err, size_t errlen);

/* Bring interface name up inside the current namespace. 0 or -errno. */
int sandbox_link_up(const char *name, char *err, size_t errlen);

#endif
