# One Vestibule node. Built by compose.yaml; see there for the volumes and environment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# .dockerignore keeps the venv, caches, tests and local data out of the build context.
COPY . .
RUN pip install . \
    && useradd --system --no-create-home --home-dir /nonexistent vestibule \
    && mkdir /data \
    && chown vestibule:vestibule /data

# A named volume mounted here starts with this directory's owner, so the app can write it.
VOLUME /data
ENV VESTIBULE_DATA_DIR=/data
# The web pages are not part of the installed package: serve them from the copied source.
ENV VESTIBULE_WEB_DIR=/src/web
USER vestibule
EXPOSE 8080
CMD ["vestibule", "serve", "--host", "0.0.0.0", "--port", "8080"]
