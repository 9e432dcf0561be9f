// Copies the browser builds of the pinned front-end packages into static/vendor/ (git-ignored), so
// Django serves them like our own static files. Run by `npm run vendor` after `npm ci`.
import { cpSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "static", "vendor");
const files = {
  "htmx.org/dist/htmx.min.js": "htmx.min.js",
  "openseadragon/build/openseadragon/openseadragon.js": "openseadragon.js",
  "openseadragon/build/openseadragon/images": "openseadragon-images",
  "@annotorious/openseadragon/dist/annotorious-openseadragon.js": "annotorious-openseadragon.js",
  "@annotorious/openseadragon/dist/annotorious-openseadragon.css": "annotorious-openseadragon.css",
  "@annotorious/plugin-tools/dist/annotorious-plugin-tools.js": "annotorious-plugin-tools.js",
  "@annotorious/plugin-tools/dist/annotorious-plugin-tools.css": "annotorious-plugin-tools.css",
};
mkdirSync(out, { recursive: true });
for (const [from, to] of Object.entries(files)) {
  const source = join(root, "node_modules", from);
  if (!existsSync(source)) {
    console.error(`missing ${source}: run npm ci first`);
    process.exit(1);
  }
  cpSync(source, join(out, to), { recursive: true });
}
console.log(`vendored ${Object.keys(files).length} files into static/vendor/`);
