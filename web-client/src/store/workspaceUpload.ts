// Creating a Testrun with a workspace: hash the picked folder, upload what
// the coordinator lacks, then CreateTestrun naming the tree.

import type { Client } from '@connectrpc/connect';
import type { ContentService } from '../gen/testrunner/v1/content_pb';
import type { Testrun, TestrunService } from '../gen/testrunner/v1/testrun_pb';
import type { PickedFolder } from '../workspace/collect';
import { buildTree, type HashProgress, type Tree } from '../workspace/tree';
import { uploadTree, type UploadProgress } from '../workspace/upload';

/** A workspace Testrun, as the form collects it. */
export interface NewWorkspaceTestrun {
  username: string;
  folder: PickedFolder;
  /** Test paths (patterns already expanded), relative to the folder. */
  tests: string[];
  setup?: string;
  env: Record<string, string>;
  command?: string;
  timeoutSeconds?: number;
  setupTimeoutSeconds?: number;
  suite?: string;
  retries?: number;
  selector?: Record<string, string>;
}

export type WorkspacePhase = 'hashing' | 'checking' | 'uploading' | 'creating';

/** Where a workspace submission is, for the progress display. */
export interface WorkspaceProgress {
  phase: WorkspacePhase;
  hash?: HashProgress;
  upload?: UploadProgress;
}

/**
 * Trees already hashed, per picked folder: submitting again after a server
 * error (a bad command, say) does not hash the folder again.
 */
const trees = new WeakMap<PickedFolder, Tree>();

export async function createWorkspaceTestrun(
  clients: { testruns: Client<typeof TestrunService>; content: Client<typeof ContentService> },
  input: NewWorkspaceTestrun,
  onProgress: (p: WorkspaceProgress) => void = () => {},
  signal?: AbortSignal,
): Promise<Testrun> {
  let tree = trees.get(input.folder);
  let hash: HashProgress | undefined;
  if (tree === undefined) {
    tree = await buildTree(input.folder.files, {
      signal,
      onProgress: (p) => {
        hash = p;
        onProgress({ phase: 'hashing', hash: p });
      },
    });
    trees.set(input.folder, tree);
  } else {
    hash = { filesHashed: tree.files, filesTotal: tree.files, bytesHashed: tree.bytes, bytesTotal: tree.bytes };
  }
  onProgress({ phase: 'checking', hash });
  let upload: UploadProgress | undefined;
  upload = await uploadTree(clients.content, tree, {
    signal,
    onProgress: (p) => {
      upload = p;
      onProgress({ phase: 'uploading', hash, upload: p });
    },
  });
  onProgress({ phase: 'creating', hash, upload });
  const command = input.command?.trim();
  const setup = input.setup?.trim();
  return clients.testruns.createTestrun(
    {
      username: input.username,
      tests: input.tests.map((name) => ({ name, content: '' })),
      workspace: tree.root,
      env: input.env,
      ...(command !== undefined && command !== '' && { command }),
      ...(setup !== undefined && setup !== '' && { setup }),
      ...(input.timeoutSeconds !== undefined && { timeoutSeconds: input.timeoutSeconds }),
      ...(input.setupTimeoutSeconds !== undefined && { setupTimeoutSeconds: input.setupTimeoutSeconds }),
      ...(input.suite !== undefined && input.suite !== '' && { suite: input.suite }),
      retries: input.retries ?? 0,
      selector: input.selector ?? {},
    },
    { signal },
  );
}
