# The tools (gen, watch, validate, load) and the bin/ scripts, built by the same bin/setup
# that bin/run uses.
FROM swift:6.0-noble
WORKDIR /app
COPY . .
RUN bin/setup --no-server
ENV INGEST_LOG_STDERR=1
# bin/pipeline passes SIGTERM (docker stop) to watch; validate and load drain and commit.
STOPSIGNAL SIGTERM
CMD ["bin/pipeline"]
