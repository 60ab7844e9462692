/* sandbox.c: private network namespaces for runs (unshare + loopback up). */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int sandbox_link_up(const char *name, char *err, size_t errlen)
{
	struct ifreq ifr;
	int fd, rc = 0;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket for interface setup: %s", strerror(-rc));
		return rc;
	}
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		rc = -errno;
		snprintf(err, errlen, "reading flags of %s: %s", name, strerror(-rc));
		goto out;
	}
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) {
		rc = -errno;
		snprintf(err, errlen, "bringing %s up: %s%s", name, strerror(-rc),
			 rc == -EPERM ? " (this needs CAP_NET_ADMIN: give the container NET_ADMIN)"
				      : "");
	}
out:
	close(fd);
	return rc;
}

int sandbox_netns_enter(char *err, size_t errlen)
{
	int home, rc;

	/* Where we are now, to come back to if the new namespace is unusable. */
	home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (unshare(CLONE_NEWNET) < 0) {
		int e = errno;
		if (e == EPERM)
			snprintf(err, errlen,
				 "no private network namespace: creating one needs CAP_SYS_ADMIN "
				 "(run as root, or give the container SYS_ADMIN)");
		else
			snprintf(err, errlen, "unshare(CLONE_NEWNET): %s", strerror(e));
		if (home >= 0)
			close(home);
		return -e;
	}
	rc = sandbox_link_up("lo", err, errlen);
	if (rc < 0) {
		/* A namespace whose loopback is down is no use (bringing it up
		 * needs CAP_NET_ADMIN too): go back, so that a fallback to the
		 * host's loopback is what really happens. */
		if (rc == -EPERM)
			snprintf(err, errlen,
				 "no private network namespace: bringing its loopback up needs "
				 "CAP_NET_ADMIN as well as CAP_SYS_ADMIN (give the container NET_ADMIN)");
		if (home < 0 || setns(home, CLONE_NEWNET) < 0) {
			snprintf(err, errlen, "left in a network namespace without a loopback "
					      "(could not return to the original one)");
			rc = -ENOTRECOVERABLE;
		}
	}
	if (home >= 0)
		close(home);
	return rc;
}
