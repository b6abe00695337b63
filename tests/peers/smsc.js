// A small SMSC for herald's SMPP tests and bench, on the npm `smpp` package
// (farhadi/node-smpp 0.5.1): not herald's code, so the bytes herald sends
// are checked by another implementation of SMPP.
//
// Listens on 127.0.0.1, port 0, and prints the port alone on its first
// stdout line. Then one JSON line per event (unless SMSC_LOG=count):
//   {"type":"bind","system_id":…,"interface_version":…,"ok":true}
//   {"type":"submit_sm","n":1,"source_addr_ton":1,…,"short_message_hex":"…",
//    "udh_hex":"0003…"|null,"message_id":"…","status":0,"dropped":false}
//   {"type":"deliver_sm_resp","sequence_number":…,"status":0}
//   {"type":"unbind"} {"type":"enquire_link"} {"type":"close"}
// A line "mo FROM TO TEXT" on stdin sends a mobile-originated deliver_sm.
// A line "refuse_binds" on stdin closes every session (after answering what
// it read) and refuses binds (ESME_RBINDFAIL) until a line "accept_binds".
// A line "stats" on stdin prints {"type":"stats",…}: counts since start,
// unique_bodies being distinct (destination, short_message) pairs received.
//
// Environment:
//   SMSC_SYSTEM_ID, SMSC_PASSWORD  credentials checked at bind (herald/secret)
//   SMSC_ID_MODE      "decimal" (default): ids are decimal everywhere;
//                     "hex": submit_sm_resp gives the id in upper-case hex
//                     with leading zeros, the receipt text gives it in decimal
//   SMSC_RECEIPT_TLVS "1" (default): receipts carry receipted_message_id and
//                     message_state TLVs as well as the text; "0": text only
//   SMSC_THROTTLE_FIRST=N  answer ESME_RTHROTTLED (0x58) to the first N submits
//   SMSC_DROP_AFTER=K      after K answered submits, take the next submit
//                          without answering and drop the connection (once)
//   SMSC_LOG          "all" (default) or "count" (only the stats line)
//   SMSC_MO_TEXT      after a successful bind, send this text as a
//                     mobile-originated deliver_sm (UCS-2) from +15559876543
//                     to 15551234567
// A receipt follows every accepted submit: stat:UNDELIV (message_state 5)
// when the destination number ends in 0, else stat:DELIVRD (state 2).
// Receipts are stored and forwarded as an SMSC does: one not answered with
// deliver_sm_resp ESME_ROK when its session closes (or answered with an
// error) is sent again to the next session that binds (counted in
// receipts_resent).
'use strict';

const smpp = require('smpp');

const systemId = process.env.SMSC_SYSTEM_ID || 'herald';
const password = process.env.SMSC_PASSWORD || 'secret';
const idMode = process.env.SMSC_ID_MODE || 'decimal';
const receiptTlvs = (process.env.SMSC_RECEIPT_TLVS || '1') === '1';
let throttleLeft = parseInt(process.env.SMSC_THROTTLE_FIRST || '0', 10);
const dropAfter = parseInt(process.env.SMSC_DROP_AFTER || '0', 10);
const logAll = (process.env.SMSC_LOG || 'all') === 'all';
const moText = process.env.SMSC_MO_TEXT || '';

// Keep short_message as raw bytes: the test asserts the octets herald sent.
for (const cmd of ['submit_sm', 'deliver_sm']) {
  delete smpp.commands[cmd].params.short_message.filter;
}

const stats = { binds: 0, submits: 0, accepted: 0, throttled: 0, dropped: 0, receipts: 0, receipt_resps: 0, receipts_resent: 0, unique_bodies: 0, ignored: 0 };
const bodies = new Set();
let nextId = 1000;
let dropped = false;
let refusing = false;
let answered = 0;
// Receipts waiting for a bound session (theirs closed before answering).
let stored = [];
// The bound sessions, newest last.
const sessions = [];

// Sends a receipt on `session`; unanswered when the session closes, or
// answered with an error, it waits in `stored` for the next bind.
function sendReceipt(session, receipt) {
  if (session.smscClosed || session.smscClosing) {
    store(receipt);
    return;
  }
  session.outstanding.add(receipt);
  session.deliver_sm(receipt, (resp) => {
    session.outstanding.delete(receipt);
    if (resp.command_status !== 0) {
      // The ESME could not take it: try again a little later.
      setTimeout(() => store(receipt), 200);
    }
  });
}

function store(receipt) {
  const live = sessions.find((s) => s.smscBound && !s.smscClosed);
  if (live) {
    stats.receipts_resent += 1;
    sendReceipt(live, receipt);
  } else {
    stored.push(receipt);
  }
}

function out(obj) {
  if (logAll) process.stdout.write(JSON.stringify(obj) + '\n');
}

function pad2(n) {
  return String(n).padStart(2, '0');
}

function smppDate(d) {
  return pad2(d.getUTCFullYear() % 100) + pad2(d.getUTCMonth() + 1) + pad2(d.getUTCDate()) +
    pad2(d.getUTCHours()) + pad2(d.getUTCMinutes());
}

function newIds() {
  const n = nextId++;
  if (idMode === 'hex') {
    return { resp: n.toString(16).toUpperCase().padStart(8, '0'), receipt: String(n) };
  }
  return { resp: String(n), receipt: String(n) };
}

const server = smpp.createServer((session) => {
  let bound = false;
  session.outstanding = new Set();
  session.on('error', () => {});
  session.on('close', () => {
    out({ type: 'close' });
    session.smscClosed = true;
    session.smscBound = false;
    const i = sessions.indexOf(session);
    if (i >= 0) sessions.splice(i, 1);
    const unanswered = Array.from(session.outstanding);
    session.outstanding.clear();
    for (const r of unanswered) store(r);
  });

  session.on('bind_transceiver', (pdu) => {
    const ok = !refusing && pdu.system_id === systemId && pdu.password === password;
    out({ type: 'bind', system_id: pdu.system_id, interface_version: pdu.interface_version, ok });
    if (!ok) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      return;
    }
    stats.binds += 1;
    bound = true;
    session.smscBound = true;
    sessions.push(session);
    session.send(pdu.response({ system_id: 'smsc' }));
    const waiting = stored;
    stored = [];
    for (const r of waiting) {
      stats.receipts_resent += 1;
      sendReceipt(session, r);
    }
    if (moText) {
      const utf16be = Buffer.from(moText, 'utf16le').swap16();
      session.deliver_sm({
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: '15559876543',
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: '15551234567',
        esm_class: 0,
        data_coding: 8,
        short_message: utf16be,
      });
    }
  });

  session.on('enquire_link', (pdu) => {
    out({ type: 'enquire_link' });
    session.send(pdu.response());
  });

  session.on('unbind', (pdu) => {
    out({ type: 'unbind' });
    session.send(pdu.response());
    bound = false;
    session.smscBound = false;
  });

  session.on('deliver_sm_resp', (pdu) => {
    stats.receipt_resps += 1;
    out({ type: 'deliver_sm_resp', sequence_number: pdu.sequence_number, status: pdu.command_status });
  });

  session.on('submit_sm', (pdu) => {
    if (session.smscClosing) {
      stats.ignored += 1;
      return;
    }
    if (!bound) {
      session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
      return;
    }
    stats.submits += 1;
    const sm = Buffer.isBuffer(pdu.short_message) ? pdu.short_message : Buffer.alloc(0);
    const body = pdu.destination_addr + '/' + sm.toString('hex');
    if (!bodies.has(body)) {
      bodies.add(body);
      stats.unique_bodies += 1;
    }
    const udhi = (pdu.esm_class & 0x40) !== 0;
    const udhLen = udhi && sm.length > 0 ? sm[0] + 1 : 0;
    const record = {
      type: 'submit_sm',
      n: stats.submits,
      source_addr_ton: pdu.source_addr_ton,
      source_addr_npi: pdu.source_addr_npi,
      source_addr: pdu.source_addr,
      dest_addr_ton: pdu.dest_addr_ton,
      dest_addr_npi: pdu.dest_addr_npi,
      destination_addr: pdu.destination_addr,
      esm_class: pdu.esm_class,
      registered_delivery: pdu.registered_delivery,
      data_coding: pdu.data_coding,
      short_message_hex: sm.toString('hex'),
      udh_hex: udhLen ? sm.subarray(0, udhLen).toString('hex') : null,
      message_id: null,
      status: 0,
      dropped: false,
    };

    if (dropAfter > 0 && !dropped && answered >= dropAfter) {
      dropped = true;
      stats.dropped += 1;
      record.dropped = true;
      out(record);
      session.destroy();
      return;
    }
    if (throttleLeft > 0) {
      throttleLeft -= 1;
      stats.throttled += 1;
      record.status = smpp.ESME_RTHROTTLED;
      out(record);
      session.send(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
      return;
    }

    const ids = newIds();
    answered += 1;
    stats.accepted += 1;
    record.message_id = ids.resp;
    out(record);
    session.send(pdu.response({ message_id: ids.resp }));

    const undeliverable = String(pdu.destination_addr).endsWith('0');
    const stat = undeliverable ? 'UNDELIV' : 'DELIVRD';
    const now = smppDate(new Date());
    const text = `id:${ids.receipt} sub:001 dlvrd:${undeliverable ? '000' : '001'} submit date:${now} ` +
      `done date:${now} stat:${stat} err:${undeliverable ? '001' : '000'} text:`;
    const receipt = {
      source_addr_ton: pdu.dest_addr_ton,
      source_addr_npi: pdu.dest_addr_npi,
      source_addr: pdu.destination_addr,
      dest_addr_ton: pdu.source_addr_ton,
      dest_addr_npi: pdu.source_addr_npi,
      destination_addr: pdu.source_addr,
      esm_class: 0x04,
      data_coding: 0,
      short_message: Buffer.from(text, 'ascii'),
    };
    if (receiptTlvs) {
      receipt.receipted_message_id = ids.resp;
      receipt.message_state = undeliverable ? 5 : 2;
    }
    stats.receipts += 1;
    sendReceipt(session, receipt);
  });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(server.address().port + '\n');
});

let stdinBuf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  stdinBuf += chunk;
  let i;
  while ((i = stdinBuf.indexOf('\n')) >= 0) {
    const line = stdinBuf.slice(0, i).trim();
    stdinBuf = stdinBuf.slice(i + 1);
    // "mo FROM TO TEXT": a mobile-originated message (GSM-7 as ASCII) from
    // FROM to TO (digits), delivered to the newest bound session.
    const mo = /^mo (\d+) (\d+) (.+)$/.exec(line);
    if (mo) {
      const live = sessions.filter((s) => s.smscBound && !s.smscClosed).pop();
      if (live) {
        live.deliver_sm({
          source_addr_ton: 1, source_addr_npi: 1, source_addr: mo[1],
          dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: mo[2],
          esm_class: 0, data_coding: 0, short_message: Buffer.from(mo[3], 'ascii'),
        });
      }
      out({ type: 'mo', from: mo[1], to: mo[2], sent: Boolean(live) });
      continue;
    }
    if (line === 'refuse_binds') {
      refusing = true;
      for (const s of sessions.slice()) {
        s.smscBound = false;
        // What it reads after this is neither taken nor answered.
        s.smscClosing = true;
        s.close();
      }
      out({ type: 'refusing' });
      continue;
    }
    if (line === 'accept_binds') {
      refusing = false;
      out({ type: 'accepting' });
      continue;
    }
    if (line === 'stats') {
      process.stdout.write(JSON.stringify(Object.assign({ type: 'stats' }, stats)) + '\n');
    }
  }
});
// The test or bench closing stdin (or dying) ends the SMSC.
process.stdin.on('end', () => process.exit(0));
