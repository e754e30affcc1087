import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import type { NewWorkspaceTestrun, WorkspaceProgress } from '../store/TestrunStore';
import { NewTestrunPage } from './NewTestrunPage';

/** A file as `<input webkitdirectory>` gives it: `webkitRelativePath` = `folder/...`. */
function inFolder(path: string, content: string): File {
  const f = new File([content], path.split('/').pop()!);
  Object.defineProperty(f, 'webkitRelativePath', { value: path });
  return f;
}

type OnWs = (input: NewWorkspaceTestrun, onProgress: (p: WorkspaceProgress) => void) => Promise<Record<string, string> | null>;

function setup(onSubmitWorkspace: OnWs) {
  render(
    <MemoryRouter>
      <NewTestrunPage onSubmit={vi.fn(async () => null)} onSubmitWorkspace={onSubmitWorkspace} />
    </MemoryRouter>,
  );
  fireEvent.click(screen.getByTestId('mode-workspace'));
  const input = screen.getByTestId('folder-input') as HTMLInputElement;
  expect(input.webkitdirectory).toBe(true);
  return {
    pickFolder: async (...files: File[]) => {
      fireEvent.change(input, { target: { files } });
      await screen.findByTestId('folder-summary');
    },
    type: (id: string, value: string) => fireEvent.change(screen.getByTestId(id), { target: { value } }),
  };
}

const project = () => [
  inFolder('proj/.gitignore', '*.pyc\nbuild/\n'),
  inFolder('proj/.git/HEAD', 'ref: refs/heads/main\n'),
  inFolder('proj/src/pkg/__init__.py', 'X = 1\n'),
  inFolder('proj/src/pkg/__init__.pyc', 'junk'),
  inFolder('proj/build/out.txt', 'junk'),
  inFolder('proj/tests/test_a.py', 'def test_a(): pass\n'),
  inFolder('proj/tests/unit/test_b.py', 'def test_b(): pass\n'),
];

// MUI forms render slowly in jsdom on a loaded 2-core machine (over the 5 s default).
describe('NewTestrunPage, Workspace mode', { timeout: 20_000 }, () => {
  it('submits the folder without .git and ignored files, the expanded patterns, set-up and env', async () => {
    const onWs = vi.fn<OnWs>(async () => null);
    const { pickFolder, type } = setup(onWs);
    type('username', 'alice');
    await pickFolder(...project());
    expect(screen.getByTestId('folder-counts').textContent).toMatch(/^4 files, .* \(3 left out/);
    type('patterns', 'tests/**/test_*.py');
    type('setup', 'pip install -e .');
    type('env', 'CI=true\nPYTHONPATH=src');
    type('command', 'python3 -m pytest -q {file}');
    fireEvent.click(screen.getByTestId('submit'));
    await waitFor(() => expect(onWs).toHaveBeenCalled());
    const input = onWs.mock.calls[0]![0];
    expect(input.folder.name).toBe('proj');
    expect(input.folder.files.map((f) => f.path).sort()).toEqual([
      '.gitignore',
      'src/pkg/__init__.py',
      'tests/test_a.py',
      'tests/unit/test_b.py',
    ]);
    expect(input).toMatchObject({
      username: 'alice',
      tests: ['tests/test_a.py', 'tests/unit/test_b.py'],
      setup: 'pip install -e .',
      env: { CI: 'true', PYTHONPATH: 'src' },
      command: 'python3 -m pytest -q {file}',
    });
  });

  it('names a pattern that matches nothing beside the field, and bad env lines beside theirs', async () => {
    const onWs = vi.fn<OnWs>(async () => null);
    const { pickFolder, type } = setup(onWs);
    await pickFolder(...project());
    type('patterns', 'tests/**/test_*.py\nit/*.py');
    type('env', 'PATH=/evil');
    fireEvent.click(screen.getByTestId('submit'));
    await waitFor(() => expect(screen.getByTestId('patterns-helper').textContent).toBe('it/*.py: matches no file in the folder'));
    expect(screen.getByTestId('env-helper').textContent).toMatch(/^line 1: PATH is the runner's own/);
    expect(onWs).not.toHaveBeenCalled();
  });

  it('asks for a folder first', async () => {
    const onWs = vi.fn<OnWs>(async () => null);
    const { type } = setup(onWs);
    type('patterns', 'tests/*.py');
    fireEvent.click(screen.getByTestId('submit'));
    expect((await screen.findByTestId('workspace-error')).textContent).toBe('choose or drop a folder');
    expect(onWs).not.toHaveBeenCalled();
  });

  it('shows progress while uploading, and server errors beside the fields they name', async () => {
    let progress: ((p: WorkspaceProgress) => void) | undefined;
    let finish: (r: Record<string, string> | null) => void = () => {};
    const { pickFolder, type } = setup(
      (_input, onProgress) =>
        new Promise((resolve) => {
          progress = onProgress;
          finish = resolve;
        }),
    );
    await pickFolder(...project());
    type('patterns', 'tests/**/test_*.py');
    fireEvent.click(screen.getByTestId('submit'));
    await waitFor(() => expect(progress).toBeDefined());
    progress!({
      phase: 'uploading',
      hash: { filesHashed: 4, filesTotal: 4, bytesHashed: 50, bytesTotal: 50 },
      upload: {
        blobsTotal: 8,
        blobsPresent: 3,
        filesPresent: 2,
        bytesPresent: 20,
        blobsToSend: 5,
        bytesToSend: 2048,
        blobsSent: 1,
        bytesSent: 1024,
      },
    });
    const shown = await screen.findByTestId('upload-progress');
    expect(shown.getAttribute('data-phase')).toBe('uploading');
    expect(shown.textContent).toContain('Uploading: 1.0 KiB of 2.0 KiB (1 of 5 blobs)');
    expect(screen.getByTestId('upload-summary').textContent).toContain('2 files (20 B) already on the coordinator');
    finish({ 'tests[1].name': 'not a file of the workspace', setup: 'must not be empty' });
    await waitFor(() =>
      expect(screen.getByTestId('patterns-helper').textContent).toBe(
        'tests[1].name (tests/unit/test_b.py): not a file of the workspace',
      ),
    );
    expect(screen.queryByTestId('upload-progress')).toBeNull();
    expect(screen.getByText('must not be empty')).toBeTruthy();
  });
});
