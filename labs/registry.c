/* registry.c: the table of labs every front end lists and runs. */
#include "lab.h"

#include <string.h>

extern const struct lab_desc lab_tcp_echo;
extern const struct lab_desc lab_udp_ping;
extern const struct lab_desc lab_sticky;
extern const struct lab_desc lab_handshake;
extern const struct lab_desc lab_layers;
extern const struct lab_desc lab_own;
extern const struct lab_desc lab_syn_flood;
extern const struct lab_desc lab_time_wait;

/* Add a lab: define its descriptor in its own file and list it here. */
const struct lab_desc *const lab_registry[] = {
	&lab_tcp_echo,
	&lab_udp_ping,
	&lab_sticky,
	&lab_handshake,
	&lab_layers,
	&lab_own,
	&lab_syn_flood,
	&lab_time_wait,
	NULL,
};

const struct lab_desc *lab_find(const char *name)
{
	size_t i;

	for (i = 0; lab_registry[i]; i++)
		if (strcmp(lab_registry[i]->name, name) == 0)
			return lab_registry[i];
	return NULL;
}

json_t *lab_describe_all(void)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a && lab_registry[i]; i++)
		json_array_append_new(a, lab_describe(lab_registry[i]));
	return a;
}
