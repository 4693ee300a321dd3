# The tools (gen, watch, validate, load, consume, contract) and the bin/ scripts, built by the
# same bin/setup that bin/run uses, with the Swift the project is built and tested with (6.3).
FROM swift:6.3-noble
WORKDIR /app
COPY . .
RUN bin/setup --no-server
ENV INGEST_LOG_STDERR=1
# bin/pipeline passes SIGTERM (docker stop) to watch; validate and load drain and commit.
STOPSIGNAL SIGTERM
CMD ["bin/pipeline"]
