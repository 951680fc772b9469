// A typed usage of every public name; `tsc --strict --noEmit` over it (test/types.test.js)
// proves index.d.ts covers the API. Never run, only type-checked.
import {
  Client,
  KlingError,
  Task,
  TaskStatus,
  TaskUpdate,
  signJwt,
  parseCallback,
  parseTask,
  verifyWebhook,
  errorForApi,
  ERROR_KINDS,
  TASK_KINDS,
  nativeVersion,
} from 'klingwatch';
import type { ClientOptions, ErrorKind, TaskKind, WaitOptions, WatchOptions } from 'klingwatch';

export async function usage(): Promise<void> {
  const options: ClientOptions = {
    accessKey: 'ak',
    secretKey: 'sk',
    region: 'global',
    baseUrl: 'http://127.0.0.1:1',
    timeoutMs: 30_000,
    maxRetries: 3,
    caCert: Buffer.from(''),
    tokenTtlSec: 1800,
    tokenRefreshMarginSec: 60,
  };
  const client = new Client(options);
  const url: string = client.baseUrl;
  const signed: number = client.tokenSignatures;
  const token: string = await client.token();
  const ac = new AbortController();

  const t: Task = await client.getImageTask('id', { signal: ac.signal });
  const t2: Task = await client.getTask('id', { kind: 'text_to_video', signal: ac.signal });
  const byExt: Task = await client.getTaskByExternalId('ext', { kind: 'image_generation' });
  const page: Task[] = await client.listTasks({ kind: 'image_generation', page: 1, pageSize: 30 });
  for await (const each of client.iterTasks({ kind: 'image_generation', pageSize: 100 })) {
    const id: string = each.id;
    void id;
  }
  const created: Task = await client.createImageTask({
    prompt: 'p',
    modelName: 'kling-v2',
    negativePrompt: 'n',
    n: 2,
    aspectRatio: '16:9',
    callbackUrl: 'https://example.invalid/cb',
    externalTaskId: 'e',
    someFutureField: true,
  });
  const generic: Task = await client.createTask('image_generation', { prompt: 'p' });
  const waitOptions: WaitOptions = {
    timeoutMs: 1000,
    pollIntervalMs: 10,
    maxPollIntervalMs: 100,
    signal: ac.signal,
    onUpdate: (u: TaskUpdate) => {
      const prev: string | null = u.previous;
      const status: string = u.task.status;
      void prev;
      void status;
    },
  };
  const done: Task = await client.waitImageTask(created.id, waitOptions);
  const done2: Task = await client.wait(created.id, { kind: 'image_generation', onUpdate: async () => {} });
  const many: Array<Task | KlingError> = await client.getMany(['a', 'b'], { kind: 'image_generation', concurrency: 8 });
  for (const r of many) {
    if (r instanceof KlingError) {
      const k: ErrorKind = r.kind;
      const fields: [string, number | null, number | null, string | null, string | null, boolean, number] = [
        r.code,
        r.httpStatus,
        r.klingCode,
        r.requestId,
        r.taskId,
        r.retryable,
        r.attempts,
      ];
      const unknown: boolean = r.outcomeUnknown;
      void k;
      void fields;
      void unknown;
    } else {
      const img = r.images[0];
      const parts: [number, string, string | null] = [img.index, img.url, img.watermarkUrl];
      const when: Date | null = r.createdAt;
      const terminal: boolean = r.isTerminal;
      void parts;
      void when;
      void terminal;
    }
  }
  const watchOptions: WatchOptions = { kind: 'image_generation', timeoutMs: 1000, concurrency: 4, signal: ac.signal };
  for await (const u of client.watch(['a', 'b'], watchOptions)) {
    if (u.task.status === TaskStatus.SUCCEED) break;
  }
  const files: string[] = await client.downloadResults(done, '/tmp/out');

  const jwt: string = signJwt('ak', 'sk', { now: 1, ttl: 1800 });
  const fromCallback: Task = parseCallback(Buffer.from('{}'));
  const parsed: Task = parseTask('{}', { kind: 'image_generation' });
  const ok: true = verifyWebhook('whsec_x', { 'webhook-id': 'x' }, '{}', { toleranceSec: 300 });
  const e: KlingError = errorForApi(429, 1302, 'm');
  const isError: Error = e;
  const kinds: readonly ErrorKind[] = ERROR_KINDS;
  const taskKinds: readonly TaskKind[] = TASK_KINDS;
  const v: string = nativeVersion();
  void [url, signed, token, t, t2, byExt, page, generic, done2, files, jwt, fromCallback, parsed, ok, isError, kinds, taskKinds, v];
}

// Mistakes the types must refuse.
export function refused(client: Client): void {
  // @ts-expect-error an unknown task kind
  void client.getTask('id', { kind: 'no_such_kind' });
  // @ts-expect-error the prompt is required
  void client.createImageTask({ n: 1 });
  // @ts-expect-error onUpdate receives a TaskUpdate, not a string
  void client.wait('id', { onUpdate: (u: number) => u });
  // @ts-expect-error tokenSignatures is read-only
  client.tokenSignatures = 3;
}
