// index.js: the renderer registry: one view per lab, mirroring labs/registry.c.
//
// A lab without an entry here is shown by the raw renderer (every event as
// JSON), so a new lab on the server is usable before it has its own view.

import * as raw from './raw.js';
import * as tcpEcho from './tcp-echo.js';
import * as udpPing from './udp-ping.js';
import * as handshake from './handshake.js';
import * as sticky from './sticky.js';
import * as layers from './layers.js';
import * as own from './own.js';
import * as synFlood from './syn-flood.js';
import * as timeWait from './time-wait.js';

const renderers = {
	'tcp-echo': tcpEcho,
	'udp-ping': udpPing,
	handshake,
	sticky,
	layers,
	own,
	'syn-flood': synFlood,
	'time-wait': timeWait,
};

// The renderer module for a lab: {create(root, ctx), formHints?}.
export function rendererFor(lab) {
	return Object.hasOwn(renderers, lab) ? renderers[lab] : raw;
}
