// A small, safe markdown renderer. It never parses HTML: the text is split into
// blocks and inline spans, and every piece becomes a DOM node made with
// createElement/textContent, so no markup in a message can reach the page as markup.
// Supported: paragraphs, # headings, - and 1. lists, > quotes, ``` code blocks,
// `code`, **bold**, *italic*, and [links](https://...) (http, https and mailto only).

const SAFE_URL = /^(https?:|mailto:)/i;
const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\s][^*\n]*\*|_[^_\s][^_\n]*_)|(\[[^\]\n]+\]\([^)\s]+\))|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/g;

function inline(text, parent) {
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) parent.append(text.slice(last, m.index));
    const [whole, code, bold, italic, link, bare] = m;
    if (code) {
      parent.append(node("code", code.slice(1, -1)));
    } else if (bold) {
      const b = document.createElement("strong");
      inline(bold.slice(2, -2), b);
      parent.append(b);
    } else if (italic) {
      const i = document.createElement("em");
      inline(italic.slice(1, -1), i);
      parent.append(i);
    } else if (link) {
      const [, label, href] = link.match(/^\[([^\]]+)\]\(([^)]+)\)$/);
      parent.append(SAFE_URL.test(href) ? anchor(href, label) : whole);
    } else if (bare) {
      parent.append(anchor(bare, bare));
    }
    last = m.index + whole.length;
  }
  if (last < text.length) parent.append(text.slice(last));
  return parent;
}

function node(tag, text) {
  const n = document.createElement(tag);
  n.textContent = text;
  return n;
}

function anchor(href, label) {
  const a = document.createElement("a");
  a.href = href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  inline(label, a);
  return a;
}

// Render `text` into a fragment of block nodes.
export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  let para = [];
  const endPara = () => {
    if (!para.length) return;
    const p = document.createElement("p");
    para.forEach((line, k) => {
      if (k) p.append(document.createElement("br"));
      inline(line, p);
    });
    out.append(p);
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*```\s*([\w+-]*)\s*$/);
    if (fence) {
      endPara();
      const body = [];
      i += 1;
      while (i < lines.length && !/^\s*```\s*$/.test(lines[i])) body.push(lines[i++]);
      i += 1; // the closing fence (or the end)
      const pre = document.createElement("pre");
      const code = node("code", body.join("\n"));
      if (fence[1]) code.dataset.lang = fence[1];
      pre.append(code);
      out.append(pre);
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      endPara();
      // Headings inside a message are kept small: h4 to h6, below the page's own.
      out.append(inline(heading[2], document.createElement(`h${Math.min(6, heading[1].length + 3)}`)));
      i += 1;
      continue;
    }
    const item = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
    if (item) {
      endPara();
      const ordered = /\d/.test(item[1]);
      const list = document.createElement(ordered ? "ol" : "ul");
      while (i < lines.length) {
        const m = lines[i].match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
        if (!m || /\d/.test(m[1]) !== ordered) break;
        list.append(inline(m[2], document.createElement("li")));
        i += 1;
      }
      out.append(list);
      continue;
    }
    if (/^>\s?/.test(line)) {
      endPara();
      const quote = document.createElement("blockquote");
      const body = [];
      while (i < lines.length && /^>\s?/.test(lines[i])) body.push(lines[i++].replace(/^>\s?/, ""));
      quote.append(renderMarkdown(body.join("\n")));
      out.append(quote);
      continue;
    }
    if (!line.trim()) endPara();
    else para.push(line);
    i += 1;
  }
  endPara();
  return out;
}

// Render into `target`, replacing what it held.
export function setMarkdown(target, text) {
  target.replaceChildren(renderMarkdown(text));
  target.classList.add("md");
  return target;
}
