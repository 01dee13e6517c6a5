/**
 * The journal orders meters as numbers: the newest of 9 and 10 is 10, in the embedded engine and in
 * PostgreSQL alike (meters are stored as NUMERIC and read back as text).
 */
import { expect } from "chai";
import type { Hex } from "viem";
import { Journal } from "../../services/oracle/journal.ts";
import { openDatabase } from "../../services/shared/db.ts";

const MACHINE = `0x${"ab".repeat(32)}` as Hex;

describe("oracle journal", () => {
  it("takes the numerically newest reading per agreement, not the textually largest", async () => {
    const db = await openDatabase();
    try {
      const journal = await Journal.open(db);
      for (const [agreementId, units] of [
        [2n, 9n],
        [2n, 10n],
        [10n, 99n],
        [10n, 100n],
        [2n, 8n],
      ] as const) {
        await journal.append({
          agreementId,
          machineId: MACHINE,
          cumulativeUnits: units,
          timestamp: 1n,
          signature: "0x",
          attested: false,
        });
      }
      expect((await journal.newest(2n))?.cumulativeUnits).to.equal(10n);
      expect((await journal.newest(10n))?.cumulativeUnits).to.equal(100n);
      const pending = await journal.pending(10);
      expect(pending.map((row) => [row.agreementId, row.cumulativeUnits])).to.deep.equal([
        [2n, 10n],
        [10n, 100n],
      ]);
    } finally {
      await db.close();
    }
  });
});
