// Gives a forked Node process the `process.parentPort` an Electron utility process has:
// messages arrive as { data } events and leave through postMessage.
const { EventEmitter } = require('node:events');
const port = new EventEmitter();
port.postMessage = (message) => process.send(message);
process.on('message', (data) => port.emit('message', { data }));
process.parentPort = port;
