"""`python manage.py db_worker`: django-tasks-db's command, running chat.worker.ChatWorker
(retries with backoff, dead-worker recovery, recurring jobs). Its options are unchanged;
`--reload` is not offered (a reloaded worker would abandon its job)."""
from django_tasks_db.management.commands import db_worker

from chat.worker import ChatWorker


class Command(db_worker.Command):
    help = "Run a background job worker (django-tasks-db's, with chat.jobs' retries and recovery)"

    def handle(self, *, verbosity, queue_name, interval, batch, backend_name, startup_delay, max_tasks, worker_id,
               exclude_queues, **options):
        self.configure_logging(verbosity)
        worker = ChatWorker(queue_names=queue_name.split(","), interval=interval, batch=batch,
                            backend_name=backend_name, startup_delay=startup_delay, max_tasks=max_tasks,
                            worker_id=worker_id, excluded_queue_names=exclude_queues.split(",") if exclude_queues else [])
        worker.configure_signals()
        worker.run()
