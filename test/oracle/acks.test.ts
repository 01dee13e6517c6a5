/**
 * Pipelined acknowledgements on a real broker (aedes, which reports each PUBACK it receives): the
 * oracle reads on while readings are being journaled, acknowledges each only once it is handled, in
 * the order the broker delivered them, holds at most `maxInFlight` unacknowledged, and never
 * acknowledges a reading it could not handle.
 */
import { expect } from "chai";
import mqtt, { type IPublishPacket, type MqttClient } from "mqtt";
import { pipelineAcks } from "../../services/oracle/acks.ts";
import { startEmbeddedBroker, type EmbeddedBroker } from "../../services/oracle/embedded-broker.ts";

interface Held {
  payload: string;
  resolve(): void;
  reject(error: Error): void;
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("oracle acknowledgements", () => {
  let broker: EmbeddedBroker;
  let subscriber: MqttClient;
  let publisher: MqttClient;
  let held: Held[];
  /** PUBACKs the broker received from the subscriber. */
  let acked: number;
  let failed: unknown[];

  async function connect(maxInFlight: number): Promise<void> {
    subscriber = mqtt.connect(broker.url, { clientId: "acks-sub", clean: true });
    pipelineAcks(subscriber, {
      maxInFlight,
      handle: (packet: IPublishPacket) =>
        new Promise<void>((resolve, reject) =>
          held.push({ payload: packet.payload.toString(), resolve, reject }),
        ),
      onError: (error) => failed.push(error),
    });
    await new Promise((resolve) => subscriber.once("connect", resolve));
    await subscriber.subscribeAsync("t/#", { qos: 1 });
    publisher = await mqtt.connectAsync(broker.url, { clientId: "acks-pub" });
  }

  async function publish(count: number): Promise<void> {
    for (let i = 0; i < count; i++) await publisher.publishAsync("t/x", `m${i}`, { qos: 1 });
  }

  beforeEach(async () => {
    broker = await startEmbeddedBroker();
    held = [];
    acked = 0;
    failed = [];
    broker.aedes.on("ack", (_packet, client) => {
      if (client?.id === "acks-sub") acked++;
    });
  });

  afterEach(async () => {
    await Promise.all([subscriber?.endAsync(true), publisher?.endAsync(true)]);
    await broker.stop();
  });

  it("reads on while readings are in hand and acknowledges each once handled, in arrival order", async () => {
    await connect(8);
    await publish(5);
    await until(() => held.length === 5, "five readings in hand");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(held.map((h) => h.payload)).to.deep.equal(["m0", "m1", "m2", "m3", "m4"]);
    expect(acked, "nothing is acknowledged before it is handled").to.equal(0);

    held[2]!.resolve();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(acked, "m2 waits for m0 and m1").to.equal(0);

    held[0]!.resolve();
    await until(() => acked === 1, "m0's PUBACK");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(acked, "m2 still waits for m1").to.equal(1);
    held[1]!.resolve();
    await until(() => acked === 3, "m1's and m2's PUBACKs");
    held[4]!.resolve();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(acked, "m4 waits for m3").to.equal(3);
    held[3]!.resolve();
    await until(() => acked === 5, "every PUBACK");
  });

  it("stops reading at the in-flight limit and goes on when one is acknowledged", async () => {
    await connect(2);
    await publish(4);
    await until(() => held.length === 2, "two readings in hand");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(held.map((h) => h.payload)).to.deep.equal(["m0", "m1"]);

    held[0]!.resolve();
    await until(() => held.length === 3, "the third reading");
    expect(held[2]!.payload).to.equal("m2");
    for (const h of held.slice(1)) h.resolve();
    await until(() => held.length === 4, "the fourth reading");
    held[3]!.resolve();
    await until(() => acked === 4, "every PUBACK");
  });

  it("never acknowledges a reading that could not be handled", async () => {
    await connect(8);
    await publish(2);
    await until(() => held.length === 2, "two readings in hand");
    held[0]!.reject(new Error("journal unavailable"));
    held[1]!.resolve();
    await until(() => failed.length === 1, "the failure to be reported");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((failed[0] as Error).message).to.equal("journal unavailable");
    expect(acked, "nothing may be acknowledged past an unjournaled reading").to.equal(0);
  });
});
