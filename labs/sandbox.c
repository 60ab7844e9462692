/* sandbox.c: private network namespaces for runs (unshare + loopback up). */
#include "sandbox.h"

#include <errno.h>
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
		snprintf(err, errlen, "bringing %s up: %s", name, strerror(-rc));
	}
out:
	close(fd);
	return rc;
}

int sandbox_netns_enter(char *err, size_t errlen)
{
	if (unshare(CLONE_NEWNET) < 0) {
		int e = errno;
		if (e == EPERM)
			snprintf(err, errlen,
				 "no private network namespace: creating one needs CAP_SYS_ADMIN "
				 "(run as root, or give the container SYS_ADMIN)");
		else
			snprintf(err, errlen, "unshare(CLONE_NEWNET): %s", strerror(e));
		return -e;
	}
	return sandbox_link_up("lo", err, errlen);
}
