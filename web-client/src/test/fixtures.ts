// Builders for API messages in tests.

import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import {
  TestSchema,
  TestrunSchema,
  Test_Status,
  Testrun_Status,
  type Test,
  type Testrun,
} from '../gen/testrunner/v1/testrun_pb';

export const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);

export function aTest(init: MessageInitShape<typeof TestSchema> = {}): Test {
  return create(TestSchema, {
    id: 1n,
    name: 'ok.sh',
    status: Test_Status.QUEUED,
    ...init,
  });
}

export function aTestrun(init: MessageInitShape<typeof TestrunSchema> = {}): Testrun {
  const defaults: MessageInitShape<typeof TestrunSchema> = {
    id: 1n,
    username: 'alice',
    status: Testrun_Status.CREATED,
    createdAt: timestampFromMs(T0),
    counts: { total: 1, queued: 1 },
    timeoutSeconds: 600,
  };
  return create(TestrunSchema, { ...defaults, ...init } as MessageInitShape<typeof TestrunSchema>);
}

/** Resolves once `predicate` holds, polling (store events arrive asynchronously). */
export async function until(predicate: () => boolean, timeoutMs = 2000): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}
