// The counselors' icons: simple line drawings on a 24×24 grid, built as inline SVG so they draw
// the same on every machine (no emoji or icon font needed). Each is decorative
// (aria-hidden="true"): the counselor's name beside it is the label.

const SVG = "http://www.w3.org/2000/svg";

// Each icon is a list of [element, attributes]; every stroke uses the text colour.
const DRAWINGS = {
  // A heart with a pulse line through it.
  "heart-pulse": [
    ["path", { d: "M12 20s-8-4.9-8-11a4.5 4.5 0 0 1 8-2.8A4.5 4.5 0 0 1 20 9c0 6.1-8 11-8 11z" }],
    ["path", { d: "M4.5 12H9l1.5-3 2 5 1.5-2h5" }],
  ],
  // A briefcase: body, handle, and the seam across it.
  briefcase: [
    ["rect", { x: 3, y: 7, width: 18, height: 13, rx: 2 }],
    ["path", { d: "M9 7V5a1 1 0 0 1 1-1h4a1 1 0 0 1 1 1v2" }],
    ["path", { d: "M3 13h18" }],
  ],
  // A mortarboard with its tassel.
  "graduation-cap": [
    ["path", { d: "M2 9l10-5 10 5-10 5z" }],
    ["path", { d: "M6 11v5c0 1.5 2.7 3 6 3s6-1.5 6-3v-5" }],
    ["path", { d: "M22 9v6" }],
  ],
  // A coin with a dollar sign.
  "dollar-sign": [
    ["circle", { cx: 12, cy: 12, r: 9 }],
    ["path", { d: "M15 9.2c-.4-1.2-1.6-1.9-3-1.9-1.7 0-3 .9-3 2.2 0 3 6 1.6 6 4.6 0 1.3-1.3 2.2-3 2.2-1.5 0-2.7-.7-3.1-1.9" }],
    ["path", { d: "M12 5.5v1.8M12 16.3v2.2" }],
  ],
  // Two people, one behind the other.
  users: [
    ["circle", { cx: 9, cy: 8, r: 3 }],
    ["path", { d: "M3 20c0-3.3 2.7-6 6-6s6 2.7 6 6" }],
    ["circle", { cx: 16.5, cy: 9, r: 2.5 }],
    ["path", { d: "M16 14.1c2.8.2 5 2.5 5 5.4" }],
  ],
  // A five-pointed star.
  star: [
    ["path", { d: "M12 3l2.7 5.6 6.1.9-4.4 4.3 1 6.1L12 17l-5.4 2.9 1-6.1-4.4-4.3 6.1-.9z" }],
  ],
  // A speech bubble, for a counselor whose icon is not drawn here.
  chat: [
    ["path", { d: "M4 5h16v11H10l-4 4v-4H4z" }],
  ],
};

export const ICON_NAMES = Object.keys(DRAWINGS);

export function counselorIcon(name) {
  const svg = document.createElementNS(SVG, "svg");
  const attributes = {
    viewBox: "0 0 24 24", width: 32, height: 32, fill: "none", stroke: "currentColor",
    "stroke-width": 1.8, "stroke-linecap": "round", "stroke-linejoin": "round",
    class: "icon", "aria-hidden": "true", focusable: "false", "data-icon": DRAWINGS[name] ? name : "chat",
  };
  for (const [key, value] of Object.entries(attributes)) svg.setAttribute(key, String(value));
  for (const [tag, shape] of DRAWINGS[name] || DRAWINGS.chat) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(shape)) node.setAttribute(key, String(value));
    svg.append(node);
  }
  return svg;
}
