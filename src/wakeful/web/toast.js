// Errors and notices, shown for a few seconds without blocking anything.

export function toast(message, kind = "error", ms = 6000) {
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
