/**
 * Taking many readings per connection while acknowledging each only once it is journaled.
 *
 * MQTT.js hands a connection's PUBLISH packets to `handleMessage` one at a time and reads the next only
 * after the handler's callback has sent the PUBACK. Waiting there for the journal would keep one
 * reading per connection in flight, and every journal commit would carry at most one reading per
 * connection. Instead the handler lets MQTT.js read on at once (its callback is called with an error
 * value, which makes MQTT.js skip its own PUBACK), and the PUBACK is written here when the reading is
 * journaled or refused for good — in the order the PUBLISH packets arrived, as MQTT requires
 * (3.1.1 and 5.0, section 4.6), and several in one socket write.
 *
 * At most `maxInFlight` readings of a connection are in hand; beyond that the connection stops reading
 * until the oldest is acknowledged, so memory stays bounded whatever the broker sends. A reading whose
 * connection dropped before its PUBACK was written is never acknowledged: the broker delivers it again
 * on the persistent session, and the journal refuses the duplicate.
 */
import type { Duplex } from "node:stream";
import type { IPublishPacket, MqttClient } from "mqtt";

/** Passed to MQTT.js's handler callback: "handled here, do not send the PUBACK yourself". */
const ACK_DEFERRED = Object.freeze(new Error("PUBACK deferred until the reading is journaled"));

interface Pending {
  messageId: number;
  stream: Duplex;
  done: boolean;
}

export interface AckPipelineOptions {
  /** Readings of one connection in hand at once. */
  maxInFlight: number;
  /** Checks and journals one reading; resolves once it may be acknowledged. */
  handle(packet: IPublishPacket): Promise<void>;
  /** The reading could not be journaled: it stays unacknowledged. */
  onError(error: unknown): void;
  /** Every piece of work started, for a graceful stop to wait on. */
  track?(work: Promise<void>): void;
}

/** Installs the pipelined handler on a connection; call before it connects. */
export function pipelineAcks(connection: MqttClient, options: AckPipelineOptions): void {
  let queue: Pending[] = [];
  let held: (() => void) | undefined;

  // Readings of one journal commit complete together, each in its own microtask: their PUBACKs are
  // written once the lot has completed, in one socket write.
  let releaseScheduled = false;
  function scheduleRelease(): void {
    if (releaseScheduled) return;
    releaseScheduled = true;
    setImmediate(release);
  }

  function release(): void {
    releaseScheduled = false;
    let stream: Duplex | undefined;
    while (queue.length > 0 && queue[0]!.done) {
      const { messageId, stream: from } = queue.shift()!;
      // A PUBACK belongs to the connection that delivered the PUBLISH; never to a later one.
      if (from !== connection.stream || from.destroyed || !from.writable) continue;
      if (stream === undefined) {
        stream = from;
        stream.cork();
      }
      stream.write(Buffer.from([0x40, 0x02, messageId >> 8, messageId & 0xff]));
    }
    stream?.uncork();
    if (held && queue.length < options.maxInFlight) {
      const resume = held;
      held = undefined;
      resume();
    }
  }

  connection.on("close", () => {
    // What was not acknowledged on the old connection comes again on the next one.
    queue = [];
    const resume = held;
    held = undefined;
    resume?.();
  });

  connection.handleMessage = (packet, callback) => {
    const entry: Pending | undefined =
      packet.qos > 0 && packet.messageId !== undefined
        ? { messageId: packet.messageId, stream: connection.stream, done: false }
        : undefined;
    if (entry) queue.push(entry);
    const work = options.handle(packet).then(
      () => {
        if (entry) {
          entry.done = true;
          scheduleRelease();
        }
      },
      (error: unknown) => options.onError(error),
    );
    options.track?.(work);
    const resume = () => callback(ACK_DEFERRED);
    if (queue.length < options.maxInFlight) resume();
    else held = resume;
  };
}
