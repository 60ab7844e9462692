// server.js: bench/classroom's reference broadcast server on npm `ws`: the same emitter's lines to every client.
//
// usage: node server.js PORT EMITTER
// Prints "listening PORT". When any client sends the text "start", it runs
// EMITTER (bench/classroom/emit) and sends each line it prints to every open
// client, the usual ws broadcast loop. No compression, like socklab.
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { WebSocketServer, WebSocket } from 'ws';

const port = Number(process.argv[2] || 0);
const emitter = process.argv[3];
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, backlog: 4096 });

function start() {
	const child = spawn(emitter, ['--run-id', 'abcdefabcdefabcd'], { stdio: ['ignore', 'pipe', 'inherit'] });
	readline.createInterface({ input: child.stdout }).on('line', (line) => {
		for (const c of wss.clients) if (c.readyState === WebSocket.OPEN) c.send(line);
	});
}

wss.on('connection', (ws) => {
	ws.on('message', (m) => {
		if (String(m) === 'start') start();
	});
});
wss.on('listening', () => {
	console.log(`listening ${wss.address().port}`);
});
