// Errors and notices, shown for a few seconds without blocking anything. While the
// server is away the banner says so once: "cannot reach the server" toasts are not
// stacked on top of it, and error toasts are cleared when it comes back.

export function toast(message, kind = "error", ms = 6000) {
  if (kind === "error" && document.body.dataset.conn === "lost"
    && String(message).startsWith("cannot reach the server")) return;
  const box = document.getElementById("toasts");
  const node = document.createElement("div");
  node.className = `toast ${kind}`;
  node.setAttribute("role", kind === "error" ? "alert" : "status");
  node.textContent = message;
  node.addEventListener("click", () => node.remove());
  box.append(node);
  while (box.children.length > 5) box.firstChild.remove();
  setTimeout(() => node.remove(), ms);
}

export function clearErrors() {
  for (const node of document.querySelectorAll("#toasts .toast.error")) node.remove();
}
