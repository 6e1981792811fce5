// Behaves as the Kanban web app's websocketService does: connects to /ws/trigger,
// pings on an interval, sends trigger_workflow with the full task payload, queues
// triggers while disconnected and re-sends them after reconnecting (after any close
// other than 1000), moves cards on stage_transition, shows workflow_log lines, and on
// every reconnect asks GET /api/adws/<adw_id> and GET /health.
// Prints one JSON object per line on stdout for the test to read.
import WebSocket from "ws";

const port = process.env.ADWD_PORT;
const adwId = process.env.ADW_ID;
const pingMs = Number(process.env.PING_MS || 15000);
const base = `http://127.0.0.1:${port}`;
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

let ws = null;
let queue = [];
let opens = 0;
let pinger = null;
const card = { stage: "backlog", logs: [] };

const trigger = {
  type: "trigger_workflow",
  data: {
    workflow_type: "adw_plan_iso",
    adw_id: adwId,
    issue_number: 42,
    model_set: "base",
    trigger_reason: "Card moved to plan",
    issue_type: "feature",
    issue_json: { title: "Add login", body: "As a user...", labels: ["feature"] },
    stages: ["plan", "build"],
    config: { auto_progress: true },
  },
};

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  else queue.push(message);
}

async function afterReconnect() {
  const adw = await fetch(`${base}/api/adws/${adwId}`);
  const health = await (await fetch(`${base}/health`)).json();
  say({ event: "http", adw_status: adw.status, adw: adw.ok ? await adw.json() : null, health });
}

function connect() {
  ws = new WebSocket(`ws://127.0.0.1:${port}/ws/trigger`);
  ws.on("open", () => {
    opens += 1;
    say({ event: "open", opens });
    const pending = queue;
    queue = [];
    pending.forEach((m) => ws.send(JSON.stringify(m)));
    pinger = setInterval(() => send({ type: "ping" }), pingMs);
    if (opens > 1) afterReconnect();
  });
  ws.on("message", (raw) => {
    const message = JSON.parse(raw.toString());
    const { type, data } = message;
    if (type === "stage_transition" && data.adw_id === adwId) card.stage = data.to_stage;
    if (type === "workflow_log" && data.adw_id === adwId) card.logs.push(data.level);
    if (type === "status_update" && data.current_step?.startsWith("Stage: ")) {
      card.stage_from_step = data.current_step.slice(7);
    }
    say({ event: "message", type, data, seq: message.seq, timestamp: message.timestamp });
    if (type === "status_update" && data.adw_id === adwId &&
        (data.status === "completed" || data.status === "failed")) {
      say({ event: "done", card });
      clearInterval(pinger);
      ws.close(1000, "Client disconnect");
    }
  });
  ws.on("close", (code) => {
    clearInterval(pinger);
    say({ event: "close", code });
    if (code !== 1000) {
      // Offline now: this trigger waits in the queue until the next connection.
      if (opens === 1) send(trigger);
      setTimeout(connect, 100);
    }
  });
  ws.on("error", () => {}); // a refused reconnect is followed by "close"
}

connect();
