"""The tags that tie runs of the local offline store to runs of their server.

Written by a ``kedro run`` that tracks offline (:mod:`kedroflow.tracking`,
:mod:`kedroflow.failover`) and read by ``kedro mlflow sync`` (:mod:`kedroflow.offline`,
:mod:`kedroflow.replay`). Pure constants.
"""

from __future__ import annotations

#: On an offline run: the server URI it was meant for, without user-info.
OFFLINE_FOR_TAG = "kedroflow.offline_for"
#: On an offline run: the server run it is uploaded to. Written by sync before any
#: upload, or when the run opens for the rest of a run whose server was lost.
SYNCED_TAG = "kedroflow.synced_to"
#: On an offline run mapped to a server run: ``uploading`` until sync completes it.
STATE_TAG = "kedroflow.sync_state"
UPLOADING, DONE = "uploading", "done"
#: On an offline run holding the rest of a server run (kedroflow.failover): its id.
CONTINUES_TAG = "kedroflow.continues"
#: On a server run whose rest waits in an offline store; removed by its sync.
PENDING_TAG = "kedroflow.pending_sync"
