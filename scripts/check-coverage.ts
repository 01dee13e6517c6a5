/**
 * Fails when line coverage of the deployable contracts (contracts/, without tests and test tokens)
 * falls below the bar. Reads coverage/lcov.info, which `hardhat test --coverage` writes.
 *
 *   npx tsx scripts/check-coverage.ts [minimumPercent=95]
 */
import { readFileSync } from "node:fs";

const minimum = Number(process.argv[2] ?? 95);
const lcov = readFileSync("coverage/lcov.info", "utf8");
let found = 0;
let hit = 0;
const rows: string[] = [];
for (const record of lcov.split("end_of_record")) {
  const file = /^SF:(.+)$/m.exec(record)?.[1]?.trim();
  if (!file || !/contracts\//.test(file) || /contracts\/(test|mocks)\//.test(file)) continue;
  const lines = Number(/^LF:(\d+)$/m.exec(record)?.[1] ?? 0);
  const covered = Number(/^LH:(\d+)$/m.exec(record)?.[1] ?? 0);
  found += lines;
  hit += covered;
  rows.push(`  ${file.replace(/^.*?contracts\//, "contracts/")}: ${covered}/${lines} lines`);
}
if (found === 0) {
  console.error("coverage: no contract lines found in coverage/lcov.info");
  process.exit(1);
}
const percent = (100 * hit) / found;
console.log(rows.join("\n"));
console.log(`coverage: ${percent.toFixed(2)} % of contract lines (minimum ${minimum} %)`);
if (percent < minimum) process.exit(1);
