// Behaves as the Kanban board's websocketService and kanbanStore do for the agent
// stream: registers its session, sends a ticket notification, triggers a workflow
// whose agent streams, and handles thinking_block, tool_use_pre, tool_use_post,
// text_block, file_changed and agent_log by the fields the board's handlers read
// (data.timestamp, data.input, data.output, data.success, data.change_type).
// Prints one JSON object per line on stdout for the test to read.
import WebSocket from "ws";

const port = process.env.ADWD_PORT;
const adwId = process.env.ADW_ID;
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const panel = []; // the card's agent log panel, as the store builds it

const handlers = {
  thinking_block: (d) => ({ kind: "thinking", text: d.content, at: d.timestamp }),
  text_block: (d) => ({ kind: "text", text: d.content, at: d.timestamp }),
  tool_use_pre: (d) => ({ kind: "tool", tool: d.tool_name, input: d.input, at: d.timestamp }),
  tool_use_post: (d) => ({
    kind: "result", tool: d.tool_name, output: d.output, ok: d.success, at: d.timestamp,
  }),
  file_changed: (d) => ({ kind: "file", path: d.file_path, change: d.change_type, at: d.timestamp }),
  agent_log: (d) => ({ kind: "log", level: d.level, text: d.message, at: d.timestamp }),
};

const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/trigger`);
ws.on("open", () => {
  ws.send(JSON.stringify({
    type: "register_session",
    data: { session_id: "sess-node", client_info: { userAgent: "node" } },
  }));
});
ws.on("message", (raw) => {
  const message = JSON.parse(raw.toString());
  const { type, data } = message;
  if (type === "session_registered") {
    say({ event: "session", data });
    ws.send(JSON.stringify({
      type: "ticket_notification",
      data: { id: 7, title: "Dark mode", stage: "backlog" },
    }));
  } else if (type === "ticket_notification_response") {
    say({ event: "ticket", data });
    ws.send(JSON.stringify({
      type: "trigger_workflow",
      data: { workflow_type: "adw_agent", adw_id: adwId, issue_type: "feature",
              issue_json: { title: "Dark mode" } },
    }));
  } else if (type in handlers && data.adw_id === adwId) {
    panel.push({ ...handlers[type](data), seq: message.seq });
  } else if (type === "error") {
    say({ event: "error", data });
  } else if (type === "status_update" && data.adw_id === adwId &&
             (data.status === "completed" || data.status === "failed")) {
    say({ event: "done", status: data.status, panel });
    ws.close(1000, "Client disconnect");
  }
});
ws.on("error", (e) => say({ event: "ws_error", message: String(e) }));
